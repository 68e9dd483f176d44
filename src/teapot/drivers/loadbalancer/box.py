"""Load balancers in a box: one network namespace per instance, HAProxy inside.

An instance's tenant leg is cabled to the box's switch on an access port of the tenant's VLAN (as
a network node's port would be configured by the switch driver), its public leg to the box's
public network (`net.public`). HAProxy proxies TCP from both VIPs to the members, checking each
member every `check_interval` seconds. A single load balancer is one instance holding both VIPs.
An active/standby pair is two instances, each with addresses of its own, and keepalived in each:
VRRP (unicast, on the public leg) elects the one that holds the VIPs; the other takes them over
within three advertisements when the active one, its HAProxy or one of its legs is lost.

`ensure()` is idempotent and restores what died; what a load balancer made is recorded under
`<state>/loadbalancers/<name>/` (a pair's instances in `a/` and `b/`) and removed by `remove()`
(or `remove_all()` when the box stops).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from teapot.drivers.loadbalancer.base import LoadBalancerError, Spec
from teapot.net.fabric import Fabric, FabricError
from teapot.net.public import PublicNetwork, PublicNetworkError

ADVERT = 1  # seconds between VRRP advertisements: the standby takes over after three missed


@dataclass(frozen=True)
class Instance:
    folder: Path  # its configuration, pid files and sockets
    namespace: str
    port: str  # its tenant leg's port on the switch
    leg: str  # its public leg's name on the public network

    def record(self, top: Path) -> dict:
        return {"folder": str(self.folder.relative_to(top)), "namespace": self.namespace,
                "port": self.port, "leg": self.leg}


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

    def _planned(self, fabric: Fabric, spec: Spec) -> list[Instance]:
        top = self.dir / spec.name
        if not spec.peers:
            return [Instance(top, f"{fabric.prefix}-lb-{spec.name}",
                             f"{fabric.prefix}l{spec.name}"[:15], f"p{spec.name}")]
        return [Instance(top / s, f"{fabric.prefix}-lb-{spec.name}{s}",
                         f"{fabric.prefix}l{spec.name}{s}"[:15], f"p{spec.name}{s}")
                for s in "ab"[:len(spec.peers)]]

    def instances(self, name: str) -> list[Instance]:
        """The instances recorded for load balancer `name` ([] when it has none)."""
        top = self.dir / name
        try:
            record = json.loads((top / "record.json").read_text())
        except FileNotFoundError:
            return []
        return [Instance(top / x["folder"], x["namespace"], x["port"], x["leg"])
                for x in record["instances"]]

    # -- making it so ----------------------------------------------------------------------------
    def ensure(self, spec: Spec) -> None:
        if spec.peers and len(spec.peers) != 2:
            raise LoadBalancerError(f"load balancer {spec.name}: a pair has two instances, "
                                    f"not {len(spec.peers)}")
        if spec.peers and shutil.which("keepalived") is None:
            raise LoadBalancerError("an active/standby load balancer needs keepalived, which is "
                                    "not installed here (make install)")
        fabric, public = self._fabric(), self._public()
        top = self.dir / spec.name
        planned = self._planned(fabric, spec)
        if [i.namespace for i in self.instances(spec.name)] not in ([], [i.namespace for i in planned]):
            self.remove(spec.name)  # from one instance to a pair, or back
        for i in planned:
            i.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (top / "record.json").write_text(json.dumps(
            {"instances": [i.record(top) for i in planned]}))
        try:
            for n, instance in enumerate(planned):
                peer = spec.peers[n] if spec.peers else None
                self._cable(fabric, public, instance, spec.vlan,
                            peer.tenant_address if peer else spec.tenant_address,
                            peer.public_address if peer else spec.public_address)
                self._haproxy(instance, spec)
                if peer:
                    self._keepalived(instance, spec, n, public.network.prefixlen)
        except (FabricError, PublicNetworkError) as e:
            raise LoadBalancerError(f"load balancer {spec.name}: {e}") from None

    def _cable(self, fabric: Fabric, public: PublicNetwork, i: Instance, vlan: int,
               tenant_address: str, public_address: str) -> None:
        ns = i.namespace
        if not _exists(ns):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        if subprocess.run(["ip", "-n", ns, "link", "show", "eth0"],
                          capture_output=True).returncode != 0:
            sw = fabric.switch_namespace
            subprocess.run(["ip", "-n", sw, "link", "del", i.port], capture_output=True)
            fabric.vsctl("--if-exists", "del-port", fabric.bridge, i.port)
            _run("ip", "link", "add", i.port, "netns", sw, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            for where, link in ((sw, i.port), (ns, "eth0")):
                _run("ip", "-n", where, "link", "set", link, "up")
                _run("ip", "netns", "exec", where, "ethtool", "-K", link, "tx", "off")
            fabric.vsctl("add-port", fabric.bridge, i.port, f"tag={vlan}", "vlan_mode=access")
        elif fabric.port_vlan(i.port) != vlan:
            fabric.vsctl("set", "port", i.port, f"tag={vlan}")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "addr", "replace", tenant_address, "dev", "eth0")
        # a leg found down comes up (absent, `attach` cables it)
        subprocess.run(["ip", "-n", ns, "link", "set", "pub0", "up"], capture_output=True)
        public.attach(i.leg, ns, public_address)

    def _haproxy(self, i: Instance, spec: Spec) -> None:
        config = i.folder / "haproxy.cfg"
        text = render(spec, i.folder / "haproxy.sock")
        changed = not config.exists() or config.read_text() != text
        if changed:
            config.write_text(text)
        pid = running(i.folder / "haproxy.pid")
        if pid and not changed:
            return
        argv = ["ip", "netns", "exec", i.namespace, "haproxy", "-D", "-f", str(config),
                "-p", str(i.folder / "haproxy.pid")]
        if pid:
            argv += ["-sf", str(pid)]  # a graceful reload: open connections finish
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            said = [line for line in (proc.stderr or proc.stdout).splitlines()
                    if "NOTICE" not in line]
            raise LoadBalancerError(f"load balancer {spec.name}: haproxy: "
                                    f"{' '.join(said).strip()[-300:]}")

    def _keepalived(self, i: Instance, spec: Spec, me: int, public_prefix: int) -> None:
        check = i.folder / "haproxy-alive"
        check.write_text(f"#!/bin/sh\nexec kill -0 \"$(cat {i.folder / 'haproxy.pid'})\"\n")
        check.chmod(0o700)
        config = i.folder / "keepalived.conf"
        text = render_keepalived(spec, me, public_prefix, check)
        changed = not config.exists() or config.read_text() != text
        if changed:
            config.write_text(text)
        pid = running(i.folder / "keepalived.pid", "keepalived")
        if pid and changed:
            os.kill(pid, signal.SIGHUP)  # keepalived reloads its configuration
        if pid:
            return
        with open(i.folder / "keepalived.log", "ab") as log:
            # in the foreground of a session of its own, logging to its folder; --dont-fork keeps
            # one pid to follow, and a keepalived that starts removes VIPs an earlier one left
            subprocess.Popen(
                ["ip", "netns", "exec", i.namespace, "keepalived", "--vrrp", "--dont-fork",
                 "--log-console", "--no-syslog", "-f", str(config),
                 "-p", str(i.folder / "keepalived.pid"),
                 "-r", str(i.folder / "keepalived-vrrp.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 5
        while not running(i.folder / "keepalived.pid", "keepalived"):
            if time.monotonic() > deadline:
                tail = (i.folder / "keepalived.log").read_text(errors="replace")[-300:]
                raise LoadBalancerError(f"load balancer {spec.name}: keepalived did not start: "
                                        f"{tail.strip()}")
            time.sleep(0.05)

    # -- removing --------------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        top = self.dir / name
        instances = self.instances(name)
        for i in instances:
            for program in ("keepalived", "haproxy"):
                _stop(i.folder / f"{program}.pid", program)
        for i in instances:
            subprocess.run(["ip", "netns", "delete", i.namespace], capture_output=True)
            try:
                self._fabric().vsctl("--if-exists", "del-port", i.port)
            except LoadBalancerError:
                pass  # the switch is gone, and its ports with it
        if top.exists():
            shutil.rmtree(top)

    def remove_all(self) -> None:
        if self.dir.is_dir():
            for folder in self.dir.iterdir():
                self.remove(folder.name)

    # -- looking ---------------------------------------------------------------------------------
    def running(self, name: str) -> bool:
        instances = self.instances(name)
        return bool(instances) and all(
            running(i.folder / "haproxy.pid") and
            (len(instances) == 1 or running(i.folder / "keepalived.pid", "keepalived"))
            for i in instances)

    def active(self, name: str) -> Instance | None:
        """The instance holding the VIPs: the only one, or the one of a pair whose public leg
        carries more than its own address."""
        instances = self.instances(name)
        if len(instances) == 1:
            return instances[0]
        for i in instances:
            legs = subprocess.run(["ip", "-n", i.namespace, "-4", "-o", "addr", "show", "dev",
                                   "pub0"], capture_output=True, text=True).stdout
            if len(legs.splitlines()) > 1:
                return i
        return None

    def health(self, name: str) -> dict[str, bool]:
        """Member address → whether its health checks pass (on every listener), from the active
        instance's HAProxy statistics; {} when it does not answer."""
        import socket

        instance = self.active(name)
        if instance is None:
            return {}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(instance.folder / "haproxy.sock"))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            members = _members(instance.folder / "haproxy.cfg")
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


def render_keepalived(spec: Spec, me: int, public_prefix: int, check: Path) -> str:
    """keepalived's configuration for instance `me` of a pair: VRRP by unicast between the two
    instances' public addresses; the VIPs on both legs move together; an instance whose HAProxy
    or either leg is down gives them up. The first instance is preferred at the start; after that
    the VIPs stay where they are until that instance is lost (nopreempt: no second move)."""
    mine, other = spec.peers[me], spec.peers[1 - me]
    vrid = sum(spec.name.encode()) % 254 + 1  # heard only by the peer: unicast
    return "\n".join([
        "# Generated by Teapot.",
        "global_defs {", f"    router_id {spec.name}{'ab'[me]}", "    script_user root", "}",
        "vrrp_script haproxy {", f'    script "{check}"', "    interval 1", "    fall 2",
        "    rise 1", "}",
        f"vrrp_instance {spec.name} {{", "    state BACKUP", "    interface pub0",
        f"    virtual_router_id {vrid}", f"    priority {150 - 50 * me}", f"    advert_int {ADVERT}",
        "    nopreempt", f"    unicast_src_ip {mine.public_address}",
        f"    unicast_peer {{ {other.public_address} }}",
        "    virtual_ipaddress {", f"        {spec.public_address}/{public_prefix} dev pub0",
        f"        {spec.tenant_address} dev eth0", "    }",
        "    track_interface { eth0 pub0 }", "    track_script { haproxy }", "}", ""])


def _members(config: Path) -> dict[str, str]:
    """Server name → member address, from the configuration `render` wrote."""
    out = {}
    for line in config.read_text().splitlines():
        words = line.split()
        if words[:1] == ["server"]:
            out[words[1]] = words[2].rsplit(":", 1)[0]
    return out


def running(pidfile: Path, program: str = "haproxy") -> int | None:
    """The pid in `pidfile` when that process is `program` and alive."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    if os.path.basename(cmdline.decode()) != program:
        return None
    stat = Path(f"/proc/{pid}/stat").read_text()
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def _stop(pidfile: Path, program: str) -> None:
    pid = running(pidfile, program)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while running(pidfile, program) and time.monotonic() < deadline:
            time.sleep(0.05)


def _exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


def _run(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise LoadBalancerError(f"{' '.join(args[:6])}: {proc.stderr.strip()}")
    return proc.stdout
