"""The box's top-of-rack switch: Open vSwitch in a network namespace of its own.

One `Fabric` is one switch. `ovsdb-server` and `ovs-vswitchd` run without systemd inside the
fabric's switch namespace, on the userspace datapath (`datapath_type=netdev`: no kernel module is
needed), with their database, run and log directories under the fabric's state directory, so that
several fabrics (parallel test boxes) never share anything. Each emulated host is a network
namespace whose `eth0` is one end of a veth pair; the other end is an access port of the bridge.
(Veths survive a restart of ovs-vswitchd; OVS internal ports moved into namespaces do not.)

An uplink namespace is cabled to a trunk port: the physical network toward which tenant VLANs are
carried (for example Neutron's provider network). OVS carries every VLAN on a trunk port whose
`trunks` set is empty, so the trunk starts with only the fabric's guard VLAN, which no host uses;
tenant VLANs are added to and removed from it by the switch driver.

The switch is configured like a real one: through networking-generic-switch's `netmiko_ovs_linux`
device over SSH, to an sshd that the fabric runs on 127.0.0.1 with generated keys
(`device_config()`). Everything the fabric creates carries its prefix, is recorded in
`fabric.json`, and is removed by `stop()`, also from another process (`Fabric.load`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
SSHD = "/usr/sbin/sshd"
SSHD_PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
IFNAMSIZ = 15
UNIX_PATH_MAX = 107
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,7}$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
STATE_FILE = "fabric.json"


class FabricError(RuntimeError):
    """The switch or a host could not be set up; the message says what and where."""


@dataclass(frozen=True)
class FabricVlans:
    """The fabric's own VLANs. Tenant VLANs are allocated elsewhere, outside these."""

    idle: int = 3999  # hosts nobody uses, and released hosts after cleaning
    provisioning: int = 4000
    cleaning: int = 4001
    guard: int = 4094  # kept on the trunk so that it never carries every VLAN

    def __post_init__(self) -> None:
        values = asdict(self)
        for name, vlan in values.items():
            if not isinstance(vlan, int) or isinstance(vlan, bool) or not 1 <= vlan <= 4094:
                raise FabricError(f"VLAN {name} must be an integer from 1 to 4094, not {vlan!r}")
        if len(set(values.values())) != len(values):
            raise FabricError(f"the fabric's VLANs must differ from each other: {values}")


@dataclass(frozen=True)
class HostPort:
    """An emulated host cabled to the switch: its namespace, its NIC and the switch port."""

    host: str
    namespace: str
    interface: str  # the NIC inside the namespace
    port: str  # the switch port (the veth end on the bridge)
    mac: str  # the NIC's MAC address

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _State:
    prefix: str
    name: str
    bridge: str
    switch_ns: str
    mac: str
    vlans: dict
    ssh_port: int | None = None
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, dict] = field(default_factory=dict)
    trunk: dict | None = None
    next_port: int = 1


class Fabric:
    """One top-of-rack switch with its hosts, under `state_dir`."""

    def __init__(self, state_dir: Path | str, *, name: str = "tor", prefix: str | None = None,
                 vlans: FabricVlans | None = None):
        prefix = prefix or "tp" + secrets.token_hex(3)
        if not PREFIX_RE.fullmatch(prefix):
            raise FabricError(f"fabric prefix {prefix!r} must be 2-8 lowercase letters or digits, "
                              "starting with a letter")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,14}", name):
            raise FabricError(f"switch name {name!r} must be 1-15 lowercase letters, digits or '-'")
        self.dir = Path(state_dir).resolve() / "fabric"
        vlans = vlans or FabricVlans()
        digest = hashlib.sha256(prefix.encode()).hexdigest()
        mac = "02:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))  # locally administered
        self.state = _State(prefix=prefix, name=name, bridge=name, switch_ns=f"{prefix}-sw",
                            mac=mac, vlans=asdict(vlans))

    # -- where things are -------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.state.prefix

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def bridge(self) -> str:
        return self.state.bridge

    @property
    def switch_namespace(self) -> str:
        return self.state.switch_ns

    @property
    def mac(self) -> str:
        """The switch's MAC address: its `switch_id` as Ironic and LLDP know it."""
        return self.state.mac

    @property
    def vlans(self) -> FabricVlans:
        return FabricVlans(**self.state.vlans)

    @property
    def hosts(self) -> dict[str, HostPort]:
        return {name: HostPort(**h) for name, h in self.state.hosts.items()}

    @property
    def trunk(self) -> HostPort | None:
        return HostPort(**self.state.trunk) if self.state.trunk else None

    @property
    def run_dir(self) -> Path:
        return self.dir / "ovs" / "run"

    @property
    def db_socket(self) -> str:
        return f"unix:{self.run_dir / 'db.sock'}"

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def ssh_port(self) -> int | None:
        return self.state.ssh_port

    def host(self, name: str) -> HostPort:
        try:
            return HostPort(**self.state.hosts[name])
        except KeyError:
            raise FabricError(f"no host {name!r} on switch {self.name}") from None

    def local_link_connection(self, host: str) -> dict[str, str]:
        """Where `host` is cabled, as Ironic's port `local_link_connection` records it."""
        return {"switch_id": self.mac, "port_id": self.host(host).port, "switch_info": self.name}

    def device_config(self) -> dict[str, str]:
        """networking-generic-switch's device options for this switch (a `[genericswitch:NAME]`
        section): netmiko's `ovs_linux` over the fabric's sshd, the host key pinned."""
        if self.ssh_port is None:
            raise FabricError(f"switch {self.name} is not running")
        trunk = self.trunk
        config = {
            "device_type": "netmiko_ovs_linux",
            "ip": "127.0.0.1",
            "port": str(self.ssh_port),
            "username": "root",
            "key_file": str(self.ssh_dir / "client_ed25519"),
            "use_keys": "true",
            "allow_agent": "false",
            "ssh_strict": "true",
            "alt_host_keys": "true",
            "alt_key_file": str(self.ssh_dir / "known_hosts"),
            "ngs_ovs_bridge": self.bridge,
            "ngs_mac_address": self.mac,
            "ngs_port_default_vlan": str(self.vlans.idle),
            "ngs_save_configuration": "false",
            "ngs_ssh_reuse_connection": "true",
        }
        if trunk:
            config["ngs_trunk_ports"] = trunk.port
        return config

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: Path | str) -> Fabric:
        """The fabric recorded under `state_dir` (to inspect or stop it from another process)."""
        path = Path(state_dir).resolve() / "fabric" / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FabricError(f"no fabric recorded in {path.parent}") from None
        fabric = cls(state_dir, name=data["name"], prefix=data["prefix"],
                     vlans=FabricVlans(**data["vlans"]))
        fabric.state = _State(**data)
        return fabric

    def start(self) -> Fabric:
        """Start the switch and its sshd. Anything half-started is removed before raising."""
        if not OVS_SCHEMA.exists() or not shutil.which("ovs-vswitchd"):
            raise FabricError("Open vSwitch is not installed (Debian package openvswitch-switch)")
        if not Path(SSHD).exists():
            raise FabricError("sshd is not installed (Debian package openssh-server)")
        ctl = self.run_dir / "ovs-vswitchd.ctl"
        if len(str(ctl)) > UNIX_PATH_MAX - 10:
            raise FabricError(f"state directory {self.dir} is too deep for OVS's unix sockets")
        if (self.dir / STATE_FILE).exists():
            raise FabricError(f"a fabric is already recorded in {self.dir}; stop it first")
        try:
            self._start_switch()
            self._start_sshd()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the daemons by PID and remove every namespace (with its veths) the fabric made."""
        for name, binary in (("sshd", "sshd"), ("ovs-vswitchd", "ovs-vswitchd"),
                             ("ovsdb-server", "ovsdb-server")):
            pidfile = (self.ssh_dir if name == "sshd" else self.run_dir) / f"{name}.pid"
            _stop_pid(pidfile, binary)
        stop_namespaces(self.state.namespaces)
        for ns in reversed(self.state.namespaces):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self.state.namespaces = []
        self.state.hosts = {}
        self.state.trunk = None
        self.state.ssh_port = None
        (self.dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Fabric:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _save(self) -> None:
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=2))
        os.replace(tmp, path)

    def _env(self) -> dict[str, str]:
        ovs = self.dir / "ovs"
        return {**os.environ, "OVS_RUNDIR": str(ovs / "run"), "OVS_DBDIR": str(ovs / "db"),
                "OVS_LOGDIR": str(ovs / "log"), "OVS_SYSCONFDIR": str(ovs / "etc")}

    def _run(self, *args: str, netns: bool = False, input: str | None = None) -> str:
        cmd = (["ip", "netns", "exec", self.switch_namespace] if netns else []) + list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self._env(), input=input)
        if proc.returncode != 0:
            raise FabricError(f"switch {self.name}: {' '.join(args[:3])} failed: "
                              f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.stdout

    def vsctl(self, *args: str) -> str:
        """Run `ovs-vsctl` against this fabric's database."""
        return self._run("ovs-vsctl", f"--db={self.db_socket}", "--timeout=30", *args)

    def _add_namespace(self, ns: str) -> None:
        self._run("ip", "netns", "add", ns)
        self.state.namespaces.append(ns)
        self._save()
        self._run("ip", "-n", ns, "link", "set", "lo", "up")

    def _start_switch(self) -> None:
        for sub in ("ovs/run", "ovs/db", "ovs/log", "ovs/etc", "ssh"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self._save()
        self._add_namespace(self.switch_namespace)
        ovs = self.dir / "ovs"
        db = ovs / "db" / "conf.db"
        db.unlink(missing_ok=True)
        self._run("ovsdb-tool", "create", str(db), str(OVS_SCHEMA))
        self._run(*self._daemon_argv("ovsdb-server"), netns=True)
        self.vsctl("--no-wait", "init")
        self._run(*self._daemon_argv("ovs-vswitchd"), netns=True)
        self.vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge,
                   "datapath_type=netdev", f"other_config:hwaddr={self.mac}")

    def _daemon_argv(self, name: str) -> list[str]:
        ovs = self.dir / "ovs"
        first = str(ovs / "db" / "conf.db") if name == "ovsdb-server" else self.db_socket
        extra = [f"--remote=punix:{ovs / 'run' / 'db.sock'}"] if name == "ovsdb-server" else []
        return [name, first, *extra, f"--unixctl={ovs / 'run' / f'{name}.ctl'}",
                f"--pidfile={ovs / 'run' / f'{name}.pid'}",
                f"--log-file={ovs / 'log' / f'{name}.log'}", "--detach", "--no-chdir"]

    # -- the switch's own processes, watched by the box ------------------------------------------
    DAEMONS = ("ovsdb-server", "ovs-vswitchd", "sshd")

    def daemon_pid(self, name: str) -> int | None:
        """The pid of one of the switch's daemons (DAEMONS) while it runs."""
        pidfile = (self.ssh_dir if name == "sshd" else self.run_dir) / f"{name}.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if not _pid_is(pid, name):
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return None
        if state == "Z":
            _reap(pid)
            return None
        return pid

    def daemon_answers(self, name: str, timeout: float = 1.0) -> bool:
        """Whether a daemon of the switch answers, not only runs: the OVS daemons their control
        socket (`ovs-appctl version`), sshd its banner. A frozen one does not."""
        if name == "sshd":
            try:
                with socket.create_connection(("127.0.0.1", self.state.ssh_port), timeout) as s:
                    s.settimeout(timeout)
                    return s.recv(4).startswith(b"SSH-")
            except OSError:
                return False
        if name not in self.DAEMONS:
            raise FabricError(f"switch {self.name}: no daemon {name!r}")
        ctl = self.run_dir / f"{name}.ctl"
        try:
            proc = subprocess.run(["ovs-appctl", "-t", str(ctl), f"--timeout={max(1, round(timeout))}",
                                   "version"], capture_output=True, env=self._env(),
                                  timeout=timeout + 1)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def restart_daemon(self, name: str) -> None:
        """Start a daemon of the switch that died, as it was started: its database, bridge,
        ports and keys are where it left them (veths survive; ovs-vswitchd finds its ports)."""
        if name not in self.DAEMONS:
            raise FabricError(f"switch {self.name}: no daemon {name!r}")
        if self.daemon_pid(name) is not None:
            return
        if name == "sshd":
            self._spawn_sshd(self.state.ssh_port)
            return
        self._run(*self._daemon_argv(name), netns=True)

    def _spawn_sshd(self, port: int) -> bool:
        ssh = self.ssh_dir
        log = ssh / "sshd.log"
        proc = subprocess.Popen([SSHD, "-D", "-f", str(ssh / "sshd_config"), "-E", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if _wait_listening(port, proc):
            return True
        proc.wait(timeout=5)
        raise FabricError(f"switch {self.name}: sshd did not start: "
                          f"{(log.read_text()[-500:] if log.exists() else '').strip()}")

    def _start_sshd(self) -> None:
        ssh = self.ssh_dir
        for key in ("host_ed25519", "client_ed25519"):
            for path in (ssh / key, ssh / f"{key}.pub"):
                path.unlink(missing_ok=True)
            self._run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"teapot-{self.name}",
                      "-f", str(ssh / key))
        client_pub = (ssh / "client_ed25519.pub").read_text().strip()
        host_pub = " ".join((ssh / "host_ed25519.pub").read_text().split()[:2])
        _write_private(ssh / "authorized_keys",
                       f"no-port-forwarding,no-agent-forwarding,no-X11-forwarding {client_pub}\n")
        SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        last_error = ""
        for _ in range(5):
            port = _free_port()
            _write_private(ssh / "known_hosts", f"[127.0.0.1]:{port} {host_pub}\n")
            _write_private(ssh / "sshd_config", "\n".join([
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {ssh / 'host_ed25519'}",
                f"PidFile {ssh / 'sshd.pid'}",
                f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
                "AllowUsers root",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "AllowTcpForwarding no",
                "AllowAgentForwarding no",
                "X11Forwarding no",
                "PermitTunnel no",
                "PermitUserEnvironment no",
                "PrintMotd no",
                "PrintLastLog no",
                "LogLevel ERROR",
                f"SetEnv OVS_RUNDIR={self.run_dir}",
                "",
            ]))
            (ssh / "sshd.log").unlink(missing_ok=True)
            try:
                self._spawn_sshd(port)
            except FabricError as e:
                last_error = str(e)
                continue
            self.state.ssh_port = port
            self._save()
            return
        raise FabricError(last_error)

    # -- hosts ------------------------------------------------------------------------------------

    def add_hosts(self, names: Iterable[str], macs: dict[str, str] | None = None) -> list[HostPort]:
        """Cable one emulated host per name to an access port on the idle VLAN. `macs` gives
        hosts' NICs the MAC addresses their BMCs report (the network data names NICs by MAC)."""
        names = list(names)
        macs = macs or {}
        for name in names:
            if not HOST_RE.fullmatch(name):
                raise FabricError(f"host name {name!r} must be 1-40 letters, digits, '_', '.' or '-'")
            if name in self.state.hosts:
                raise FabricError(f"host {name!r} is already on switch {self.name}")
        if len(set(names)) != len(names):
            raise FabricError(f"host names repeat: {names}")
        ports = []
        for name in names:
            port = f"{self.prefix}p{self.state.next_port}"
            self.state.next_port += 1
            ports.append(self._cable(f"{self.prefix}-{name}", port, name, macs.get(name)))
        idle = self.vlans.idle
        args: list[str] = []
        for hp in ports:
            args += ["--", "add-port", self.bridge, hp.port, f"tag={idle}", "vlan_mode=access"]
        self.vsctl(*args[1:])
        for hp in ports:
            self.state.hosts[hp.host] = hp.to_dict()
        self._save()
        return ports

    def add_host(self, name: str) -> HostPort:
        return self.add_hosts([name])[0]

    def add_trunk(self, name: str = "uplink") -> HostPort:
        """Cable a namespace `name` to the trunk port (tagged frames, guard VLAN only at first)."""
        if self.state.trunk:
            raise FabricError(f"switch {self.name} already has a trunk")
        if not HOST_RE.fullmatch(name):
            raise FabricError(f"trunk name {name!r} must be 1-40 letters, digits, '_', '.' or '-'")
        hp = self._cable(f"{self.prefix}-{name}", f"{self.prefix}t0", name)
        self.vsctl("add-port", self.bridge, hp.port, "vlan_mode=trunk",
                   f"trunks={self.vlans.guard}")
        self.state.trunk = hp.to_dict()
        self._save()
        return hp

    def _cable(self, ns: str, port: str, host: str, mac: str | None = None) -> HostPort:
        if len(port) > IFNAMSIZ:
            raise FabricError(f"port name {port!r} is longer than {IFNAMSIZ} characters")
        self._add_namespace(ns)
        address = ["address", mac] if mac else []
        self._run("ip", "link", "add", port, "netns", self.switch_namespace, "type", "veth",
                  "peer", "name", "eth0", *address, "netns", ns)
        self._run("ip", "-n", self.switch_namespace, "link", "set", port, "up")
        self._run("ip", "-n", ns, "link", "set", "eth0", "up")
        # The userspace datapath forwards frames as they are: with checksum offload a veth hands
        # it TCP and UDP segments whose checksums nobody fills in, and receivers drop them.
        for where, link in ((ns, "eth0"), (self.switch_namespace, port)):
            self._run("ip", "netns", "exec", where, "ethtool", "-K", link, "tx", "off")
        mac = json.loads(self._run("ip", "-n", ns, "-j", "link", "show", "eth0"))[0]["address"]
        return HostPort(host=host, namespace=ns, interface="eth0", port=port, mac=mac)

    # -- what the switch says ---------------------------------------------------------------------

    def port_vlan(self, port: str) -> int | None:
        """The access VLAN of `port` as OVS has it (None when untagged)."""
        out = self.vsctl("get", "port", port, "tag").strip()
        return None if out in ("", "[]") else int(out)

    def trunk_vlans(self) -> set[int]:
        trunk = self.trunk
        if not trunk:
            return set()
        out = self.vsctl("get", "port", trunk.port, "trunks").strip().strip("[]")
        return {int(v) for v in out.split(",") if v.strip()}

    def exec_in(self, host: str, *cmd: str, check: bool = False,
                timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command inside a host's namespace."""
        ns = self.trunk.namespace if self.trunk and self.trunk.host == host else self.host(host).namespace
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout)


def stop_namespaces(namespaces: list[str], timeout: float = 5.0, waiting=None) -> None:
    """Whatever still runs inside the namespaces (an emulated host's programs whose service did
    not stop them): SIGTERM, then SIGKILL. A deleted namespace would otherwise live on, unseen,
    for as long as they do. `waiting` is called while they stop (to reap one's own children)."""
    def pids() -> list[int]:
        out = []
        for ns in namespaces:
            proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            out += [int(p) for p in proc.stdout.split()]
        return out

    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = pids()
        for pid in running:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            if waiting is not None:
                waiting()
            time.sleep(0.1)
            running = pids()
        if not running:
            return


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    return False


def _pid_is(pid: int, binary: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return os.path.basename(cmdline).startswith(binary)


def _stop_pid(pidfile: Path, binary: str, timeout: float = 10.0) -> None:
    """Stop the process named in `pidfile` if it still is `binary` (never another that took its
    PID): SIGTERM, then SIGKILL after `timeout`."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    if not _pid_is(pid, binary):
        pidfile.unlink(missing_ok=True)
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_is(pid, binary):
            _reap(pid)
            time.sleep(0.05)
        if _pid_is(pid, binary):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
