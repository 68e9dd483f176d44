"""Load balancers in a box: one network namespace each, HAProxy inside.

Its tenant leg is cabled to the box's switch on an access port of the tenant's VLAN (as a
network node's port would be configured by the switch driver), its public leg to the box's public
network (`net.public`). HAProxy proxies TCP from both VIPs to the members, checking each member
every `check_interval` seconds. `ensure()` is idempotent and restarts an HAProxy that died; what a
load balancer made is recorded under `<state>/loadbalancers/` and removed by `remove()` (or
`remove_all()` when the box stops).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from teapot.drivers.loadbalancer.base import LoadBalancerError, Spec
from teapot.net.fabric import Fabric, FabricError
from teapot.net.public import PublicNetwork, PublicNetworkError


class BoxLoadBalancers:
    def __init__(self, state_dir: Path | str):
        self.state_dir = Path(state_dir).resolve()
        self.dir = self.state_dir / "loadbalancers"

    def public_cidr(self) -> str:
        return self._public().cidr

    def _public(self) -> PublicNetwork:
        try:
            return PublicNetwork.load(self.state_dir)
        except PublicNetworkError as e:
            raise LoadBalancerError(f"the box's public network: {e}") from None

    def _fabric(self) -> Fabric:
        try:
            return Fabric.load(self.state_dir)
        except FabricError as e:
            raise LoadBalancerError(f"the box's switch: {e}") from None

    def _names(self, fabric: Fabric, name: str) -> tuple[str, str]:
        return f"{fabric.prefix}-lb-{name}", f"{fabric.prefix}l{name}"[:15]

    # -- making it so ----------------------------------------------------------------------------
    def ensure(self, spec: Spec) -> None:
        fabric, public = self._fabric(), self._public()
        ns, port = self._names(fabric, spec.name)
        folder = self.dir / spec.name
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / "record.json").write_text(json.dumps({"namespace": ns, "port": port}))
        try:
            if not _exists(ns):
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            if subprocess.run(["ip", "-n", ns, "link", "show", "eth0"],
                              capture_output=True).returncode != 0:
                self._cable(fabric, ns, port, spec.vlan)
            elif fabric.port_vlan(port) != spec.vlan:
                fabric.vsctl("set", "port", port, f"tag={spec.vlan}")
            _run("ip", "-n", ns, "addr", "replace", spec.tenant_address, "dev", "eth0")
            public.attach(f"p{spec.name}", ns, spec.public_address)
            self._haproxy(ns, folder, spec)
        except (FabricError, PublicNetworkError) as e:
            raise LoadBalancerError(f"load balancer {spec.name}: {e}") from None

    def _cable(self, fabric: Fabric, ns: str, port: str, vlan: int) -> None:
        sw = fabric.switch_namespace
        subprocess.run(["ip", "-n", sw, "link", "del", port], capture_output=True)
        fabric.vsctl("--if-exists", "del-port", fabric.bridge, port)
        _run("ip", "link", "add", port, "netns", sw, "type", "veth", "peer", "name", "eth0",
             "netns", ns)
        for where, link in ((sw, port), (ns, "eth0")):
            _run("ip", "-n", where, "link", "set", link, "up")
            _run("ip", "netns", "exec", where, "ethtool", "-K", link, "tx", "off")
        fabric.vsctl("add-port", fabric.bridge, port, f"tag={vlan}", "vlan_mode=access")

    def _haproxy(self, ns: str, folder: Path, spec: Spec) -> None:
        config = folder / "haproxy.cfg"
        text = render(spec, folder / "haproxy.sock")
        changed = not config.exists() or config.read_text() != text
        if changed:
            config.write_text(text)
        pid = running(folder / "haproxy.pid")
        if pid and not changed:
            return
        argv = ["ip", "netns", "exec", ns, "haproxy", "-D", "-f", str(config),
                "-p", str(folder / "haproxy.pid")]
        if pid:
            argv += ["-sf", str(pid)]  # a graceful reload: open connections finish
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            said = [line for line in (proc.stderr or proc.stdout).splitlines()
                    if "NOTICE" not in line]
            raise LoadBalancerError(f"load balancer {spec.name}: haproxy: "
                                    f"{' '.join(said).strip()[-300:]}")

    # -- removing --------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        folder = self.dir / name
        record_file = folder / "record.json"
        if not record_file.exists():
            return
        record = json.loads(record_file.read_text())
        pid = running(folder / "haproxy.pid")
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while running(folder / "haproxy.pid") and time.monotonic() < deadline:
                time.sleep(0.05)
        subprocess.run(["ip", "netns", "delete", record["namespace"]], capture_output=True)
        try:
            self._fabric().vsctl("--if-exists", "del-port", record["port"])
        except LoadBalancerError:
            pass  # the switch is gone, and its ports with it
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()

    def remove_all(self) -> None:
        if self.dir.is_dir():
            for folder in self.dir.iterdir():
                self.remove(folder.name)

    def health(self, name: str) -> dict[str, bool]:
        """Member address → whether its health checks pass (on every listener), from HAProxy's
        statistics; {} when it does not answer."""
        import socket

        folder = self.dir / name
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(folder / "haproxy.sock"))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            members = _members(folder / "haproxy.cfg")
        except OSError:
            return {}
        lines = data.decode(errors="replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        out: dict[str, bool] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            address = members.get(row.get("svname", ""))
            if address:
                out[address] = out.get(address, True) and row.get("status", "").startswith("UP")
        return out

    def pid(self, name: str) -> int | None:
        return running(self.dir / name / "haproxy.pid")

    def namespace(self, name: str) -> str | None:
        record = self.dir / name / "record.json"
        return json.loads(record.read_text())["namespace"] if record.exists() else None


def render(spec: Spec, stats_socket: Path) -> str:
    inter = f"{int(spec.check_interval * 1000)}ms"
    lines = ["# Generated by Teapot.", "global", "    maxconn 4000",
             f"    stats socket {stats_socket} mode 600 level admin", "defaults", "    mode tcp",
             "    timeout connect 3s", "    timeout client 1h", "    timeout server 1h",
             "    option redispatch", "    retries 2"]
    for listener in spec.listeners:
        name = f"l{listener.port}"
        lines += [f"frontend {name}", f"    bind :{listener.port}", f"    default_backend {name}",
                  f"backend {name}", "    balance roundrobin",
                  f"    default-server inter {inter} fall {spec.check_fall} rise 1"]
        lines += [f"    server m{i} {member}:{listener.backend_port} check"
                  for i, member in enumerate(spec.members)]
    return "\n".join(lines) + "\n"


def _members(config: Path) -> dict[str, str]:
    """Server name → member address, from the configuration `render` wrote."""
    out = {}
    for line in config.read_text().splitlines():
        words = line.split()
        if words[:1] == ["server"]:
            out[words[1]] = words[2].rsplit(":", 1)[0]
    return out


def running(pidfile: Path) -> int | None:
    """The pid in `pidfile` when that process is HAProxy and alive."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    if os.path.basename(cmdline.decode()) != "haproxy":
        return None
    stat = Path(f"/proc/{pid}/stat").read_text()
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def _exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


def _run(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise LoadBalancerError(f"{' '.join(args[:6])}: {proc.stderr.strip()}")
    return proc.stdout
