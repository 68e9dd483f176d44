"""One emulated host: a network namespace cabled to the box's switch, a disk (a folder of the state
directory), and processes that run inside the namespace with the disk's `/etc/kubernetes`,
`/var/lib/kubelet` and `/var/lib/etcd` mounted where a real host has them (a mount namespace of
their own, so the machine's folders are never touched).

`boot()` does what a real host does when Ironic has deployed it: cloud-init applies the network
data to the NIC with that MAC address, writes the user data's files, runs its commands once per
deployment, and the image's kubelet starts. `power_off()` stops every process of the namespace;
`wipe()` also clears the disk and the NIC, as Ironic's cleaning does.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from teapot.emulated import cloudinit
from teapot.net.fabric import stop_namespaces

LOG = logging.getLogger(__name__)
MOUNTS = ("/etc/kubernetes", "/var/lib/kubelet", "/var/lib/etcd")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """What the box's hosts are deployed with: the Kubernetes programs of each release built here
    (tag → folder), etcd, and a folder of commands on the hosts' PATH (kubeadm, kubectl)."""

    releases: dict[str, Path]
    etcd: Path
    bin: Path

    def env(self) -> dict[str, str]:
        return {"TEAPOT_RELEASES": ":".join(f"{tag}={path}" for tag, path in self.releases.items()),
                "PATH": f"{self.bin}:{SYSTEM_PATH}"}


class EmulatedHost:
    def __init__(self, name: str, namespace: str, disk: Path, image: Image):
        self.name, self.namespace, self.disk, self.image = name, namespace, disk, image
        self.hostname = name  # until the user data names one
        self.kubelet: subprocess.Popen | None = None

    # -- the disk --------------------------------------------------------------------------------
    @property
    def instance_file(self) -> Path:
        return self.disk / "var/lib/cloud/instance-id"

    def instance(self) -> str | None:
        try:
            return self.instance_file.read_text().strip()
        except FileNotFoundError:
            return None

    def path(self, inside: str) -> Path:
        return self.disk / inside.lstrip("/")

    # -- booting ---------------------------------------------------------------------------------
    def boot(self, instance: str, user_data: str | None, network_data: dict | None) -> None:
        """Start the host as deployed with this config drive: a new deployment gets a fresh disk
        and runs its user data's commands once; a host booted again keeps its disk."""
        first = self.instance() != instance
        self.power_off()  # what a former run of the box left running
        if first:
            self.wipe()
            self.instance_file.parent.mkdir(parents=True, exist_ok=True)
        for inside in MOUNTS:
            self.path(inside).mkdir(parents=True, exist_ok=True)
        self.configure_network(network_data)
        parsed = cloudinit.parse_user_data(user_data or "")
        if first:
            for f in parsed.files:
                target = self.path(f.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                # the owner's part of the mode the user data asks for: this disk is a directory
                # of the box's state, which nobody else on the machine may read
                mode = f.mode & 0o700
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as out:
                    out.write(f.content)
                os.chmod(target, mode)
            if parsed.unsupported:
                self._log(f"cloud-init: not carried out on an emulated host: "
                          f"{', '.join(parsed.unsupported)}")
            self.instance_file.write_text(instance + "\n")
            if parsed.commands:
                self._run_commands(parsed.commands)
        self.hostname = parsed.hostname or self.name
        self.start_kubelet()

    def configure_network(self, network_data: dict | None) -> None:
        """The addresses of the network data on the NICs with those MACs, nothing else."""
        links = json.loads(self._ip("-j", "link", "show"))
        by_mac = {link.get("address", "").lower(): link["ifname"] for link in links}
        for iface in cloudinit.parse_network_data(network_data or {}):
            name = by_mac.get(iface.mac)
            if name is None:
                self._log(f"network data: no NIC with MAC {iface.mac}")
                continue
            self._ip("addr", "flush", "dev", name)
            self._ip("link", "set", name, "mtu", str(iface.mtu), "up")
            self._ip("addr", "add", iface.address, "dev", name)
            if iface.gateway:
                self._ip("route", "replace", "default", "via", iface.gateway, "dev", name)
            if iface.dns:
                resolv = self.path("/etc/resolv.conf")
                resolv.parent.mkdir(parents=True, exist_ok=True)
                resolv.write_text("".join(f"nameserver {d}\n" for d in iface.dns))
            self._log(f"network data: {iface.address} on {name} ({iface.mac})")

    def _ip(self, *args: str) -> str:
        proc = subprocess.run(["ip", "-n", self.namespace, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"host {self.name}: ip {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def argv(self, command: list[str]) -> list[str]:
        """`command` inside the host: its network namespace, a mount namespace with its disk's
        folders where a real host has them, and a UTS namespace with its host name."""
        # the mount points, empty folders on this machine (a fresh one has none of them)
        binds = f"mkdir -p {' '.join(MOUNTS)} && " + "".join(
            f"mount --bind {shlex.quote(str(self.path(m)))} {m} && " for m in MOUNTS)
        hostname = shlex.quote(self.hostname)
        script = f"{binds}hostname {hostname} && exec \"$@\""
        return ["ip", "netns", "exec", self.namespace, "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-c", script, "sh", *command]

    def _spawn(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(self.argv(command), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, env={**self.image.env(), **env},
                                    start_new_session=True, preexec_fn=die_with_parent)

    def _run_commands(self, commands: tuple[str, ...]) -> None:
        """runcmd, once per deployment, as cloud-init runs it: one shell script, in order."""
        script = self.path("/var/lib/cloud/instance/scripts/runcmd")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("#!/bin/sh\n" + "\n".join(commands) + "\n")
        script.chmod(0o700)
        done = self.path("/var/lib/cloud/instance/runcmd-exit")
        self._spawn(["sh", "-c", f"{shlex.quote(str(script))}; echo $? > {shlex.quote(str(done))}"],
                    self.path("/var/log/cloud-init-output.log"), {})
        self._log("cloud-init: runcmd started")

    def start_kubelet(self) -> None:
        """The image's kubelet, enabled as it is on Teapot's images: it waits for its
        configuration, which kubeadm writes."""
        if self.kubelet is not None and self.kubelet.poll() is None:
            return
        releases = [f"--release={tag}={path}" for tag, path in self.image.releases.items()]
        self.kubelet = self._spawn(
            [sys.executable, "-m", "teapot.emulated.kubelet",
             f"--hostname={self.hostname}",
             f"--logs={self.path('/var/log/pods')}", f"--release=etcd={self.image.etcd}",
             *releases],
            self.path("/var/log/kubelet.log"), {})

    def kubelet_exited(self) -> int | None:
        return self.kubelet.poll() if self.kubelet is not None else None

    # -- stopping --------------------------------------------------------------------------------
    def power_off(self, timeout: float = 15.0) -> None:
        """Every process in the host's namespace stops (SIGTERM, then SIGKILL)."""
        stop_namespaces([self.namespace], timeout, waiting=_reap)
        if self.kubelet is not None:
            try:
                self.kubelet.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            self.kubelet = None

    def wipe(self) -> None:
        """Cleaned: no process, no address, an empty disk."""
        self.power_off()
        links = json.loads(self._ip("-j", "link", "show"))
        for link in links:
            if link["ifname"] != "lo":
                self._ip("addr", "flush", "dev", link["ifname"])
        shutil.rmtree(self.disk, ignore_errors=True)

    def _log(self, message: str) -> None:
        LOG.info("host %s: %s", self.name, message)
        log = self.path("/var/log/teapot-host.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")


def die_with_parent() -> None:
    """In a child before it runs its program: SIGTERM when the process that started it dies, so
    a host's processes never outlive the service that runs the host (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
