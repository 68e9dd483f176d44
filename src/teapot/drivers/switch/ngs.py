"""A switch driven by networking-generic-switch's device drivers, used as a library.

The device options are those of a `[genericswitch:NAME]` section (`device_type`, `ip`, `port`,
`username`, `key_file` or `password`, `ngs_*` options, netmiko connection options): any switch ngs
supports works, `netmiko_ovs_linux` drives the box's Open vSwitch over SSH.

ngs's netmiko drivers open one configuration session per operation, and each session ends with
netmiko waiting for the switch to fall silent (about 2 s). Teapot therefore gathers the commands of
many operations and sends them in one session, through the hook ngs itself batches with
(`device.batch_cmds.do_batch(device, commands)`), then checks the switch's answer with the device's
own `check_output`. The SSH connection is kept between sessions (`ngs_ssh_reuse_connection`).
Devices that are not netmiko based are called once per operation. For Open vSwitch, each
operation's commands run as one OVSDB transaction (see `ovs_transactions`), and the switch's answer
is read for ovs-vsctl errors, which ngs's OVS driver does not look for. A change written to OVSDB
counts as done only once ovs-vswitchd has applied it (ovs-vsctl waits for its `cur_cfg` to reach
the database's `next_cfg`, bounded by `ovs_confirmed`); a data plane that does not apply it
(ovs-vswitchd frozen or dead) is a SwitchError, so the conductor keeps the host waiting with the
reason and tries again.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from teapot.drivers.switch.base import (
    SwitchConfigError,
    SwitchError,
    check_port,
    check_vlan,
)

SECRET_OPTIONS = frozenset({"password", "secret", "passphrase"})
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_VLAN_NAMESPACE = uuid.UUID("5a0c3c1e-6a3d-4c59-9a84-0c9f1b1f7e21")
_ENTRY_POINTS = "generic_switch.devices"


def device_types() -> list[str]:
    """Every device type networking-generic-switch provides."""
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=_ENTRY_POINTS))


def _known_ngs_options() -> set[str]:
    from networking_generic_switch import devices
    from networking_generic_switch.devices.netmiko_devices import ovs

    opts = list(devices.NGS_INTERNAL_OPTS) + list(devices.NGS_L2VNI_OPTS)
    return {o.name for o in opts + list(ovs.OVS_INTERNAL_OPTS)}


def _as_option(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SwitchConfigError(f"switch option {key!r} must be a string, number or list")


def validate_device(name: str, device: Mapping[str, object]) -> dict[str, str]:
    """Check a switch's device options and return them as ngs reads them (strings)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SwitchConfigError(f"switch name {name!r} must be 1-64 letters, digits or _ . : -")
    if not isinstance(device, Mapping):
        raise SwitchConfigError(f"switch {name}: device options must be a mapping")
    config = {str(k): _as_option(str(k), v) for k, v in device.items() if v is not None}
    device_type = config.get("device_type", "")
    known = device_types()
    if device_type not in known:
        raise SwitchConfigError(f"switch {name}: device_type {device_type!r} is not one of "
                                f"networking-generic-switch's: {', '.join(known)}")
    unknown = sorted(k for k in config if k.startswith("ngs_") and k not in _known_ngs_options())
    if unknown:
        raise SwitchConfigError(f"switch {name}: unknown option(s) {', '.join(unknown)}")
    if config.get("ngs_batch_requests", "false").lower() in ("1", "true", "yes", "on"):
        raise SwitchConfigError(f"switch {name}: ngs_batch_requests needs an etcd coordination "
                                "backend; Teapot batches the switch's changes itself")
    if "ngs_port_default_vlan" not in config:
        raise SwitchConfigError(f"switch {name}: ngs_port_default_vlan (the idle VLAN) is "
                                "required: a port leaving a network must land on a VLAN")
    try:
        check_vlan(int(config["ngs_port_default_vlan"]), "ngs_port_default_vlan")
    except (ValueError, SwitchError):
        raise SwitchConfigError(f"switch {name}: ngs_port_default_vlan must be a VLAN id from "
                                f"1 to 4094, not {config['ngs_port_default_vlan']!r}") from None
    if device_type.startswith("netmiko_") and device_type != "netmiko_fake":
        for key in ("username",):
            if not config.get(key):
                raise SwitchConfigError(f"switch {name}: {key} is required")
        if not (config.get("ip") or config.get("host")):
            raise SwitchConfigError(f"switch {name}: ip (or host) is required")
        if not (config.get("key_file") or config.get("password")):
            raise SwitchConfigError(f"switch {name}: key_file or password is required")
        if "port" in config:
            if not config["port"].isdigit() or not 1 <= int(config["port"]) <= 65535:
                raise SwitchConfigError(f"switch {name}: port must be a TCP port number, "
                                        f"not {config['port']!r}")
        key_file = config.get("key_file")
        if key_file and not Path(key_file).is_file():
            raise SwitchConfigError(f"switch {name}: key_file {key_file} does not exist")
    config.setdefault("ngs_ssh_reuse_connection", "true")
    return config


class _Collector:
    """Takes the place of ngs's batch queue: keeps the commands of each operation it is given."""

    def __init__(self) -> None:
        self.operations: list[list[str]] = []

    def do_batch(self, device, cmd_set) -> str:
        self.operations.append(list(cmd_set))
        return ""


OVS_VSCTL = "ovs-vsctl "
OVS_LINE_MAX = 3000  # stay well under the terminal's 4096-byte line limit
OVS_ERROR_RE = re.compile(r"^ovs-vsctl: ", re.M)


def ovs_transactions(operations: list[list[str]]) -> list[str]:
    """ngs's Open vSwitch commands for many operations, as few `ovs-vsctl` transactions.

    ngs changes an OVS port with several `ovs-vsctl` runs (clear tag, clear trunks, clear
    vlan_mode, set vlan_mode, set tag). Between those runs the port has neither tag nor mode, and
    OVS then trunks every VLAN to it: the host would see, and could send into, every tenant's VLAN.
    Joined with `--`, the same commands are one OVSDB transaction, which ovs-vswitchd applies at
    once. Each operation stays whole within one transaction; operations are packed together up to
    a safe line length.
    """
    lines: list[str] = []
    current: list[str] = []
    for cmds in operations:
        if not all(c.startswith(OVS_VSCTL) for c in cmds):
            raise SwitchError(f"not an ovs-vsctl command: {cmds!r}")
        parts = [c[len(OVS_VSCTL):] for c in cmds]
        if current and len(OVS_VSCTL + " -- ".join(current + parts)) > OVS_LINE_MAX:
            lines.append(OVS_VSCTL + " -- ".join(current))
            current = []
        current += parts
    if current:
        lines.append(OVS_VSCTL + " -- ".join(current))
    return lines


OVS_WAIT = 1  # seconds ovs-vswitchd has to apply a transaction: under netmiko's 2 s of silence


def ovs_confirmed(lines: list[str], nonce: str) -> list[str]:
    """Transactions for the switch's shell that each wait (at most OVS_WAIT seconds) for
    ovs-vswitchd to apply them, as ovs-vsctl does by default, and then print their exit status as
    `teapot-rc-<nonce>-<i> <status>`: 0 once applied, 142 (SIGALRM) when the data plane did not
    apply it in time."""
    # Each also writes its own mark: a transaction that changes nothing (its change is already in
    # the database, from an attempt the data plane never applied) would not wait at all.
    return [f"{OVS_VSCTL}--timeout={OVS_WAIT} {line[len(OVS_VSCTL):]} -- set Open_vSwitch . "
            f"external_ids:teapot-change={nonce}-{i}; echo teapot-rc-{nonce}-{i} $?"
            for i, line in enumerate(lines)]


def ovs_outcome(output: str, nonce: str, count: int) -> str | None:
    """None when every transaction was applied; else what went wrong, from the switch's answer."""
    for i in range(count):
        found = re.search(rf"^teapot-rc-{nonce}-{i} (\d+)\s*$", output, re.M)
        if found is None:
            return "the switch did not confirm the change"
        if found[1] == "142":
            return (f"written to the switch's database but not applied by its data plane within "
                    f"{OVS_WAIT} s (ovs-vswitchd is not answering)")
        if found[1] != "0":
            return f"ovs-vsctl exited with status {found[1]}"
    return None


def _load_ngs() -> None:
    """Import networking-generic-switch once. Its batching module registers an exit hook that waits
    for a thread pool Teapot never uses (commands are batched here, in one session) and logs an
    error on every exit; Teapot takes that hook out."""
    import atexit

    from networking_generic_switch import batching

    atexit.unregister(batching._wait_for_threads)


class NgsSwitch:
    """One switch, configured through networking-generic-switch's driver for its device type."""

    def __init__(self, name: str, device: Mapping[str, object]):
        config = validate_device(name, device)
        self.name = name
        self.device_type = config["device_type"]
        self.idle_vlan: int | None = int(config["ngs_port_default_vlan"])
        self._secrets = sorted((v for k, v in config.items() if k in SECRET_OPTIONS and v),
                               key=len, reverse=True)
        self._lock = threading.Lock()
        self.sessions = 0  # configuration sessions opened on the switch
        try:
            _load_ngs()
            from networking_generic_switch import devices

            self._device = devices.device_manager(dict(config), name)
        except Exception as exc:
            raise SwitchConfigError(self._scrub(
                f"switch {name}: networking-generic-switch refused the device: {exc}")) from None
        self._batching = (getattr(self._device, "batch_cmds", False) is None
                          and hasattr(self._device, "send_commands_to_device"))

    def __repr__(self) -> str:
        return f"NgsSwitch(name={self.name!r}, device_type={self.device_type!r})"

    @property
    def supports_trunk_ports(self) -> bool:
        return bool(getattr(self._device, "support_trunk_on_ports", False))

    # -- the Switch interface ---------------------------------------------------------------------

    def add_vlans(self, vlans: Iterable[int]) -> None:
        vlans = sorted({check_vlan(v) for v in vlans})
        self._apply("add network", [
            (lambda v=v: self._device.add_network(v, self._network_id(v))) for v in vlans])

    def remove_vlans(self, vlans: Iterable[int]) -> None:
        vlans = sorted({check_vlan(v) for v in vlans})
        self._apply("delete network", [
            (lambda v=v: self._device.del_network(v, self._network_id(v))) for v in vlans])

    def set_access_vlan(self, port: str, vlan: int, current: int | None = None) -> None:
        self.set_many({port: vlan}, None if current is None else {port: current})

    def set_many(self, assignments: Mapping[str, int],
                 current: Mapping[str, int] | None = None) -> None:
        current = dict(current or {})
        calls: list[Callable[[], object]] = []
        for port, vlan in assignments.items():
            check_port(port)
            check_vlan(vlan)
        for port, vlan in sorted(assignments.items()):
            leaving = current.get(port)
            if leaving is not None and check_vlan(leaving) not in (vlan, self.idle_vlan):
                calls.append(lambda p=port, v=leaving: self._device.delete_port(p, v))
            calls.append(lambda p=port, v=vlan: self._device.plug_port_to_network(p, v))
        self._apply("plug port", calls)

    def set_trunk(self, port: str, native_vlan: int, vlans: Iterable[int]) -> None:
        check_port(port)
        check_vlan(native_vlan)
        tagged = sorted({check_vlan(v) for v in vlans} - {native_vlan})
        if not self.supports_trunk_ports:
            raise SwitchError(f"switch {self.name}: device type {self.device_type} cannot make "
                              "trunk ports")
        details = {"sub_ports": [{"segmentation_id": v} for v in tagged]}
        self._apply("plug port", [
            lambda: self._device.plug_port_to_network(port, native_vlan, trunk_details=details)])

    def set_idle(self, ports: Mapping[str, int]) -> None:
        calls: list[Callable[[], object]] = []
        for port, leaving in ports.items():
            check_port(port)
            check_vlan(leaving)
        for port, leaving in sorted(ports.items()):
            calls.append(lambda p=port, v=leaving: self._device.delete_port(p, v))
        self._apply("unplug port", calls)

    def close(self) -> None:
        drain = getattr(self._device, "_drain_cached_connections", None)
        if drain:
            with self._lock:
                drain()

    # -- internals --------------------------------------------------------------------------------

    @staticmethod
    def _network_id(vlan: int) -> str:
        # ngs names VLANs on the switch after a network UUID: one stable UUID per VLAN id
        return str(uuid.uuid5(_VLAN_NAMESPACE, f"vlan-{vlan}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _apply(self, what: str, calls: list[Callable[[], object]]) -> None:
        """Run ngs operations; with a netmiko device, as one configuration session."""
        if not calls:
            return
        with self._lock:
            try:
                if not self._batching:
                    for call in calls:
                        self.sessions += 1
                        call()
                    return
                collector = _Collector()
                self._device.batch_cmds = collector
                try:
                    for call in calls:
                        call()
                finally:
                    self._device.batch_cmds = None
                commands = [c for op in collector.operations for c in op]
                ovs = self.device_type == "netmiko_ovs_linux"
                nonce = uuid.uuid4().hex[:12]
                if ovs and commands:
                    commands = ovs_confirmed(ovs_transactions(collector.operations), nonce)
                if commands:
                    self.sessions += 1
                    output = self._device.send_commands_to_device(commands) or ""
                    self._device.check_output(output, what)
                    if ovs and OVS_ERROR_RE.search(output):
                        # ngs's OVS driver reads no errors from the switch's answer
                        error = OVS_ERROR_RE.split(output, 1)[1].splitlines()[0]
                        raise SwitchError(f"switch {self.name}: {what} failed: ovs-vsctl: {error}")
                    problem = ovs_outcome(output, nonce, len(commands)) if ovs else None
                    if problem:
                        raise SwitchError(f"switch {self.name}: {what}: {problem}")
            except SwitchError:
                raise
            except Exception as exc:
                message = f"switch {self.name}: {what} failed: {type(exc).__name__}: {exc}"
                raise SwitchError(self._scrub(message)) from None
