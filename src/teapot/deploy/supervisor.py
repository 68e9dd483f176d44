"""Supervising a box's processes: what exits is started again, what keeps exiting is backed off,
and the rest keeps serving.

A component that exits is restarted at once; when it exits again within the window (5 minutes),
each restart waits twice as long as the one before, up to a cap (a minute), as systemd, Kubernetes
and supervisord do. The supervisor never waits for one component: a restarted service's readiness
is probed once per round, between looks at the others.

Daemons that run on their own (the switch's ovsdb-server, ovs-vswitchd and sshd, which detach) are
watched the same way through their pid files (`Daemon`): one that died is started again, with the
same backoff, and shows in the status like every other component. Every few seconds each is also
asked whether it answers: one that runs and does not (frozen, hung) is shown `not answering`.

After every change the supervisor writes its view to `run/status.json` in the state directory,
which `teapot status` reads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from teapot.deploy.secrets import write_private
from teapot.deploy.service import Service
from teapot.deploy.targets.local import (
    DeployError,
    LocalTarget,
    Running,
    log_tail,
    stop_process_group,
)

WINDOW = 300.0  # seconds in which exits are counted
STATUS_FILE = Path("run") / "status.json"


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a component that exited `exits` times in the window
    (the last exit included): at once after one exit, then base, 2 base, 4 base, ... up to cap."""

    base: float = 1.0
    cap: float = 60.0
    window: float = WINDOW

    def delay(self, exits: int) -> float:
        if exits <= 1:
            return 0.0
        # Past 2**64 the cap has long been reached; keep the float small.
        return min(self.cap, self.base * 2.0 ** min(exits - 2, 64))


@dataclass
class Component:
    service: Service
    running: Running | None
    state: str = "running"  # running | starting | restarting | stopped
    exits: list[float] = field(default_factory=list)  # time.time() of recent exits
    last_code: int | None = None
    delay: float = 0.0  # the current wait between an exit and the next start
    next_try: float = 0.0  # time.monotonic() of the next start
    started: float = 0.0  # time.monotonic() of the last start

    @property
    def name(self) -> str:
        return self.service.name


class Daemon(Protocol):
    """A process that runs on its own, found by its pid file."""

    name: str

    def pid(self) -> int | None:
        """Its pid while it runs."""

    def start(self) -> None:
        """Start it again as it was started (raises DeployError)."""

    def answers(self) -> bool:
        """Whether it answers (a frozen one runs and does not), within a second or so."""


ANSWER_EVERY = 5.0  # seconds between looks at whether a watched daemon answers


@dataclass
class Watched:
    daemon: Daemon
    state: str = "running"  # running | not answering | restarting | stopped
    asked: float = 0.0  # time.monotonic() of the last look at whether it answers
    exits: list[float] = field(default_factory=list)
    last_code: int | None = None
    delay: float = 0.0
    next_try: float = 0.0

    @property
    def name(self) -> str:
        return self.daemon.name


class Supervisor:
    def __init__(self, target: LocalTarget, services: Iterable[Service], say: Callable[[str], None],
                 backoff: Backoff = Backoff(), start_timeout: float = 120.0,
                 daemons: Iterable[Daemon] = ()):
        self.target = target
        self.say = say
        self.backoff = backoff
        self.start_timeout = start_timeout
        self.components = {s.name: Component(s, target.running.get(s.name)) for s in services}
        for component in self.components.values():
            if component.running is None:
                component.state = "stopped"
        self.watched = {d.name: Watched(d) for d in daemons}
        self.status_file = target.ctx.state_dir / STATUS_FILE
        self.closed = False
        self._client = httpx.Client(timeout=1.0)

    # -- one round -------------------------------------------------------------------------------
    def step(self) -> None:
        """Look at every component once: note exits, start what is due, probe what is starting."""
        changed = False
        for c in self.components.values():
            if c.state in ("running", "starting") and c.running.process.poll() is not None:
                code = c.running.process.returncode
                self._failed(c, f"{c.name} exited with code {code}", code, show_log=True)
                changed = True
        now = time.monotonic()
        for c in self.components.values():
            if c.state == "restarting" and now >= c.next_try:
                try:
                    c.running = self.target.start(c.service)
                except DeployError as e:  # its port is taken, say
                    self._failed(c, f"{c.name} could not be started: {e}", None, show_log=False)
                else:
                    c.state, c.started = "starting", now
                changed = True
        for c in self.components.values():
            if c.state == "starting":
                changed |= self._check_started(c)
        changed |= self._watch(now)
        if changed:
            self.write_status()

    def _watch(self, now: float) -> bool:
        changed = False
        for w in self.watched.values():
            if w.state in ("running", "not answering") and w.daemon.pid() is None:
                self._backoff(w, f"{w.name} is not running")
                changed = True
            elif w.state in ("running", "not answering") and now - w.asked >= ANSWER_EVERY:
                # A process that runs and does not answer (frozen, deadlocked) is shown as such.
                w.asked = now
                answering = w.daemon.answers()
                if answering != (w.state == "running"):
                    w.state = "running" if answering else "not answering"
                    self.say(f"{w.name} answers again" if answering else
                             f"{w.name} runs but does not answer")
                    changed = True
            elif w.state == "restarting" and now >= w.next_try:
                try:
                    w.daemon.start()
                except DeployError as e:
                    self._backoff(w, f"{w.name} could not be started: {e}")
                else:
                    w.state = "running"
                    self.say(f"{w.name} is running again")
                changed = True
        return changed

    def _check_started(self, c: Component) -> bool:
        now = time.monotonic()
        try:
            ready = self.target.probe(c.running, self._client)
        except DeployError:
            return False  # it exited: the next round restarts it
        if c.service.readiness is None:
            ready = ready and now - c.started >= 0.5  # alive for a moment counts as started
        if ready:
            c.state = "running"
            if c.delay:
                self.say(f"{c.name} is running again")
            return True
        if now - c.started > self.start_timeout:
            stop_process_group(c.running.process, timeout=5)
            self._failed(c, f"{c.name} was not ready after {self.start_timeout:.0f} s", None,
                         show_log=True)
            return True
        return False

    def _failed(self, c: Component, what: str, code: int | None, show_log: bool) -> None:
        if c.running is not None:
            self.target.forget(c.running)
            c.running = None
        c.last_code = code
        grew = self._backoff(c, what, say=not show_log)
        if grew and show_log and c.delay:
            log = self.target.ctx.log_path(c.name)
            self.say(f"{what}; {len(c.exits)} exits in {self.backoff.window / 60:.0f} min, "
                     f"restarting it in {c.delay:g} s; last lines of {log}:\n{log_tail(log)}")
        elif show_log:
            self._say_restart(c, what)

    def _backoff(self, c: Component | Watched, what: str, say: bool = True) -> bool:
        """An exit counted, the next start scheduled; whether the wait grew."""
        wall = time.time()
        c.exits = [t for t in c.exits if wall - t < self.backoff.window] + [wall]
        delay = self.backoff.delay(len(c.exits))
        grew, c.delay = delay > c.delay, delay
        c.state, c.next_try = "restarting", time.monotonic() + delay
        if say:
            self._say_restart(c, what)
        return grew

    def _say_restart(self, c: Component | Watched, what: str) -> None:
        if not c.delay:
            self.say(f"{what}; restarting it")
        else:
            self.say(f"{what}; {len(c.exits)} exits in {self.backoff.window / 60:.0f} min, "
                     f"restarting it in {c.delay:g} s")

    # -- the loop --------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[float], bool], tick: float = 0.25) -> None:
        """Supervise until `should_stop(tick)` (which waits up to `tick` seconds) says so."""
        self.write_status()
        while not should_stop(tick):
            self.step()

    def close(self) -> None:
        """After every child was stopped: the status says so."""
        for c in [*self.components.values(), *self.watched.values()]:
            c.state = "stopped"
        self.closed = True
        self.write_status()
        self._client.close()

    # -- status ----------------------------------------------------------------------------------
    def write_status(self) -> None:
        now, wall = time.monotonic(), time.time()
        components = {}
        for c in self.components.values():
            alive = c.state in ("running", "starting") and c.running is not None
            components[c.name] = {
                "state": c.state,
                "pid": c.running.process.pid if alive else None,
                "exits": [t for t in c.exits if wall - t < self.backoff.window],
                "last_code": c.last_code,
                "next_try": wall + max(0.0, c.next_try - now) if c.state == "restarting" else None,
            }
        for w in self.watched.values():
            components[w.name] = {
                "state": w.state,
                "pid": w.daemon.pid() if w.state in ("running", "not answering") else None,
                "exits": [t for t in w.exits if wall - t < self.backoff.window], "last_code": None,
                "next_try": wall + max(0.0, w.next_try - now) if w.state == "restarting" else None,
            }
        write_private(self.status_file, json.dumps({
            "pid": os.getpid(), "updated": wall, "window": self.backoff.window,
            "stopped": self.closed, "components": components}, indent=1) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path, now: float | None = None) -> list[tuple[str, str, str]]:
    """Rows (component, state, detail) of the box in `state_dir`, the whole box first: ok when
    every component runs, degraded when one does not, stopped when `teapot up` is not running."""
    path = state_dir / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"no box status in {state_dir}: `teapot up` is not running with this "
                          "state directory, or is still starting") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DeployError(f"{path} is not a status file: {e}") from None
    now = time.time() if now is None else now
    window = float(status.get("window", WINDOW))
    minutes = f"{window / 60:.0f} min"
    supervisor_alive = _alive(int(status["pid"])) and not status.get("stopped")
    rows, troubles = [], []
    for name, c in status["components"].items():
        exits = sum(1 for t in c.get("exits", []) if now - t < window)
        state = c["state"] if supervisor_alive else "stopped"
        if state == "running":
            detail = f"pid {c['pid']}" + (f", {exits} exits in {minutes}" if exits else "")
        elif state == "starting":
            detail = f"pid {c['pid']}, waiting until it is ready ({exits} exits in {minutes})"
        elif state == "not answering":
            detail = f"pid {c['pid']} runs but does not answer (frozen or hung)"
        elif state == "restarting":
            wait = max(0.0, (c.get("next_try") or now) - now)
            detail = (f"{exits} exits in {minutes}, next try in {wait:.0f} s"
                      + ("" if c.get("last_code") is None else f", last exit code {c['last_code']}"))
        else:
            detail = ""
        if state != "running":
            troubles.append(f"{name} {state}" + (f" ({exits} exits in {minutes})" if exits else ""))
        rows.append((name, state, detail))
    if not supervisor_alive:
        overall = ("box", "stopped", f"teapot up (pid {status['pid']}) has stopped")
    elif troubles:
        overall = ("box", "degraded", "; ".join(troubles))
    else:
        overall = ("box", "ok", f"teapot up pid {status['pid']}")
    return [overall, *rows]
