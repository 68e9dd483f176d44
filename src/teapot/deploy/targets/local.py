"""The local target: services as processes on this machine, bound to loopback (used by `teapot up`).

Each service gets `DIR/etc/<service>/` for its config files, `DIR/data/<service>/` for its data (SQLite
databases among it) and `DIR/logs/<service>.log`. Bootstrap steps marked `once` leave a marker in
`DIR/data/<service>/` so a second start skips them.

Everything in the state directory may hold a secret (Ironic's database keeps BMC passwords, logs may
show tokens): files are written owner-only, and services and their steps run with umask 077 so
that what they create later is owner-only too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from teapot.deploy.secrets import SecretStore, write_atomic, write_private
from teapot.deploy.service import Service, Step, config_dir, step_waves

UMASK = 0o077  # of every process a local target starts: what they create is their owner's only


class DeployError(Exception):
    """A service could not be set up or started; the message says which and why."""


def open_log(path: Path) -> int:
    """A file descriptor appending to the log at `path`, created owner-only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class LocalContext:
    state_dir: Path
    ports: Mapping[str, int]
    secrets: SecretStore
    settings: Mapping[str, object] = field(default_factory=dict)
    bind_host: str = "127.0.0.1"

    def port(self, service: str) -> int:
        try:
            return self.ports[service]
        except KeyError:
            raise DeployError(f"no port is set for service {service!r}") from None

    def url(self, service: str) -> str:
        return f"http://{self.bind_host}:{self.port(service)}"

    def public_url(self, service: str) -> str:
        return self.url(service)

    def messaging_url(self, service: str) -> str:
        raise DeployError(f"{service} needs RabbitMQ, which a box does not run")

    def cache_servers(self) -> str | None:
        return None

    def config_path(self, service: str, name: str) -> str:
        return str(self.state_dir / "etc" / service / name)

    def data_path(self, service: str, name: str) -> str:
        return str(self.state_dir / "data" / service / name)

    def database_url(self, service: str) -> str:
        if service in self.server_databases():
            from teapot.deploy.services import mariadb

            return mariadb.url(self, service)
        return f"sqlite:///{self.state_dir / 'data' / service / (service + '.sqlite')}"

    def server_databases(self) -> list[str]:
        """The databases kept in the box's MariaDB (`settings["mariadb"]`), not in SQLite files."""
        return [str(db) for db in self.settings.get("mariadb") or ()]

    def secret(self, name: str) -> str:
        return self.secrets.get(name)

    def log_path(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"


def _bin_dir() -> str:
    return str(Path(sys.executable).parent)


def _environ(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = _bin_dir() + os.pathsep + env.get("PATH", "")
    env.pop("OS_CLOUD", None)  # services configure themselves from their files, not the user's cloud
    env.update(extra)
    return env


@dataclass
class Running:
    service: Service
    process: subprocess.Popen
    log: Path


class LocalTarget:
    """Renders, bootstraps, starts and stops services as local processes."""

    def __init__(self, ctx: LocalContext):
        self.ctx = ctx
        self.running: dict[str, Running] = {}
        self._log_lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------------------
    def render(self, service: Service) -> None:
        cdir = config_dir(service)
        for cf in service.config_files:
            path = Path(self.ctx.config_path(cdir, cf.name))
            # Services sharing a config directory render it at the same time: write whole files.
            # In a box every config file is owner-only: some hold passwords, the rest say where
            # the secrets are.
            write_atomic(path, cf.render(self.ctx), 0o600)
        Path(self.ctx.data_path(service.name, "")).mkdir(mode=0o700, parents=True, exist_ok=True)
        if service.database:
            Path(self.ctx.data_path(service.database, "")).mkdir(mode=0o700, parents=True, exist_ok=True)

    def bootstrap(self, service: Service) -> None:
        """Run the service's bootstrap steps, wave by wave; the steps of a wave at once."""
        for wave in step_waves(service.bootstrap):
            todo = [s for s in wave if not (s.once and self._marker(service, s).exists())]
            if len(todo) > 1:
                with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                    for future in [pool.submit(self._run_step, service, s) for s in todo]:
                        future.result()
            elif todo:
                self._run_step(service, todo[0])

    def _marker(self, service: Service, step: Step) -> Path:
        return Path(self.ctx.data_path(service.name, f".{step.name.replace(' ', '-')}.done"))

    def _run_step(self, service: Service, step: Step) -> None:
        log = self.ctx.log_path(service.name)
        result = subprocess.run(
            list(step.argv(self.ctx)), env=_environ({**service.env(self.ctx), **step.env(self.ctx)}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.ctx.state_dir, umask=UMASK,
        )
        # Steps of a wave end in any order, never interleaved.
        with self._log_lock, os.fdopen(open_log(log), "ab") as out:
            out.write(f"--- bootstrap step {step.name}\n".encode() + result.stdout)
        if result.returncode != 0:
            raise DeployError(
                f"{service.name}: bootstrap step {step.name!r} failed (exit {result.returncode}); "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        if step.once:
            marker = self._marker(service, step)
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.touch(mode=0o600)

    # -- processes -------------------------------------------------------------------------------
    def start(self, service: Service) -> Running:
        if service.port is not None and not port_is_free(self.ctx.bind_host, self.ctx.port(service.name)):
            raise DeployError(
                f"{service.name}: port {self.ctx.bind_host}:{self.ctx.port(service.name)} is already in use; "
                "stop whatever listens there or choose other ports with --port-base"
            )
        log = self.ctx.log_path(service.name)
        with os.fdopen(open_log(log), "ab") as out:
            out.write(f"--- starting {service.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            out.flush()
            process = subprocess.Popen(
                list(service.command(self.ctx)), env=_environ(service.env(self.ctx)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.ctx.state_dir, start_new_session=True, umask=UMASK,
            )
        running = Running(service, process, log)
        self.running[service.name] = running
        write_private(self._pidfile(service.name), str(process.pid))
        return running

    def _pidfile(self, name: str) -> Path:
        return self.ctx.state_dir / "run" / f"{name}.pid"

    def probe(self, running: Running, client: httpx.Client) -> bool:
        """One look at a started service: is it ready? Raises DeployError when it has exited."""
        code = running.process.poll()
        if code is not None:
            raise DeployError(
                f"{running.service.name} exited with code {code} while starting; last lines of "
                f"{running.log}:\n{log_tail(running.log)}"
            )
        ready = running.service.extra.get("ready")
        if callable(ready):  # a box-only check of its own (e.g. a cluster set up by the start)
            return bool(ready(self.ctx))
        readiness = running.service.readiness
        if readiness is None:
            # A server that speaks no HTTP is ready when its port takes connections.
            return running.service.port is None or _accepts(self.ctx.bind_host,
                                                            self.ctx.port(running.service.name))
        try:
            response = client.get(self.ctx.url(running.service.name) + readiness.path)
        except httpx.TransportError:
            return False
        return response.status_code in readiness.ok_status

    def wait_ready(self, running: Running, timeout: float = 120.0) -> None:
        service = running.service
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if service.readiness is None:
                    # No health endpoint: alive for a moment counts as started.
                    time.sleep(0.5)
                if self.probe(running, client):
                    return
                if time.monotonic() > deadline:
                    raise DeployError(
                        f"{service.name} was not ready after {timeout:.0f} s; last lines of "
                        f"{running.log}:\n{log_tail(running.log)}"
                    )
                time.sleep(0.1)

    def prepare(self, service: Service) -> None:
        """Config files and bootstrap steps: what a service needs before it starts, and never
        another service running, except a database server (see `launch`)."""
        self.render(service)
        if not self._database_in_server(service):
            self.bootstrap(service)

    def _database_in_server(self, service: Service) -> bool:
        return service.database is not None and service.database in self.ctx.server_databases()

    def launch(self, service: Service) -> Running:
        """Start a prepared service and wait until it is ready. A service whose database is in a
        server (which it depends on, and which runs by now) bootstraps first: its migrations
        need the server."""
        if self._database_in_server(service):
            self.bootstrap(service)
        running = self.start(service)
        self.wait_ready(running)
        return running

    def up(self, service: Service) -> Running:
        self.prepare(service)
        return self.launch(service)

    def exited(self) -> list[tuple[Running, int]]:
        return [(r, r.process.returncode) for r in self.running.values() if r.process.poll() is not None]

    def forget(self, running: Running) -> None:
        """Clean up after a process that ended by itself: what is left of its process group and its
        pid file; stop_all() no longer needs to stop it."""
        stop_process_group(running.process, timeout=0)
        if self.running.get(running.service.name) is running:
            del self.running[running.service.name]
            self._pidfile(running.service.name).unlink(missing_ok=True)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every started process (its whole process group), newest first, by PID."""
        for name in reversed(list(self.running)):
            running = self.running[name]
            stop_process_group(running.process, timeout)
            self._pidfile(name).unlink(missing_ok=True)
        self.running.clear()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def stop_process_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Workers of a server may outlive their parent for a moment; the group goes down together.
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
