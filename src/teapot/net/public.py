"""The box's public network: where load balancers' VIPs live and the "outside world" reaches them.

A namespace holds a bridge (the public network) and an address of its own on it, standing for a
client outside the cloud (`namespace`, named by `teapot status -f json` as `public_namespace`).
The machine reaches the public network through a veth whose end in the machine's namespace holds
the first address of the range: a connected route, so the range never goes out through the
machine's own gateway. The range is chosen among private ranges that overlap no route or address
the machine has (`choose_cidr`), or refused when the one asked for does.

Load balancers cable a leg to the bridge with `attach()`. Everything is recorded in
`public.json` and removed by `stop()`, also from another process (`PublicNetwork.load`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "public.json"
BRIDGE = "public"
# Private ranges the box may take for its public side, in order of preference.
CANDIDATES = ("172.31.250.0/24", "10.254.250.0/24", "192.168.250.0/24", "172.30.250.0/24",
              "10.253.250.0/24")


class PublicNetworkError(RuntimeError):
    pass


def machine_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine routes or has an address in (the default route aside)."""
    out = []
    for table in ("main", "local"):
        proc = subprocess.run(["ip", "-j", "-4", "route", "show", "table", table],
                              capture_output=True, text=True)
        for route in json.loads(proc.stdout or "[]"):
            dst = route.get("dst", "default")
            if dst == "default" or route.get("type") in ("broadcast",):
                continue
            try:
                out.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return out


def choose_cidr(wanted: str | None = None,
                taken: list[ipaddress.IPv4Network] | None = None) -> str:
    """`wanted` if it overlaps nothing the machine has (else an error naming the clash), or the
    first candidate that overlaps nothing."""
    taken = machine_networks() if taken is None else taken
    taken = [t for t in taken if not t.is_loopback]
    for text in ([wanted] if wanted else list(CANDIDATES)):
        net = ipaddress.IPv4Network(text)
        clash = next((t for t in taken if t.overlaps(net)), None)
        if clash is None:
            return str(net)
        if wanted:
            raise PublicNetworkError(f"the public range {net} overlaps {clash}, which this machine "
                                     "routes; choose another")
    raise PublicNetworkError(f"every range the box could use for its public side ({', '.join(CANDIDATES)}) "
                             "overlaps a route of this machine")


@dataclass
class _State:
    prefix: str
    cidr: str
    namespace: str
    host_link: str  # the veth end in the machine's namespace
    links: dict[str, str] = field(default_factory=dict)  # attached leg → its namespace


class PublicNetwork:
    def __init__(self, state_dir: Path | str, prefix: str, cidr: str):
        self.dir = Path(state_dir).resolve() / "public"
        self.state = _State(prefix, str(ipaddress.IPv4Network(cidr)), f"{prefix}-pub",
                            f"{prefix}pub0")

    @property
    def cidr(self) -> str:
        return self.state.cidr

    @property
    def namespace(self) -> str:
        return self.state.namespace

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.state.cidr)

    @property
    def gateway(self) -> str:
        """The machine's address on the public network."""
        return str(self.network[1])

    @property
    def client(self) -> str:
        """The outside world's address (in `namespace`)."""
        return str(self.network[2])

    def pool(self) -> tuple[str, str]:
        """Where VIPs come from: the range but the machine's, the client's and the broadcast."""
        return str(self.network[10]), str(self.network[-2])

    @classmethod
    def load(cls, state_dir: Path | str) -> PublicNetwork:
        path = Path(state_dir).resolve() / "public" / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PublicNetworkError(f"no public network recorded in {path.parent}") from None
        net = cls(state_dir, data["prefix"], data["cidr"])
        net.state = _State(**data)
        return net

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=2))
        os.replace(tmp, self.dir / STATE_FILE)

    def start(self) -> PublicNetwork:
        if (self.dir / STATE_FILE).exists():
            PublicNetwork.load(self.dir.parent).stop()
        self._save()
        try:
            ns, link = self.namespace, self.state.host_link
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge")
            _run("ip", "-n", ns, "link", "set", BRIDGE, "up")
            prefix = self.network.prefixlen
            _run("ip", "-n", ns, "addr", "add", f"{self.client}/{prefix}", "dev", BRIDGE)
            _run("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
            _run("ip", "link", "add", link, "type", "veth", "peer", "name", "up0", "netns", ns)
            _run("ip", "-n", ns, "link", "set", "up0", "master", BRIDGE, "up")
            _run("ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", link)
            _run("ip", "link", "set", link, "up")
        except BaseException:
            self.stop()
            raise
        return self

    def attach(self, name: str, namespace: str, address: str) -> str:
        """Cable `namespace` to the public network with `address` on its leg `pub0`; idempotent.
        Returns the leg's name."""
        port = f"{self.state.prefix}{name}"[:15]
        present = subprocess.run(["ip", "-n", namespace, "link", "show", "pub0"],
                                 capture_output=True).returncode == 0
        if not present:
            subprocess.run(["ip", "-n", self.namespace, "link", "del", port], capture_output=True)
            _run("ip", "-n", self.namespace, "link", "add", port, "type", "veth", "peer", "name",
                 "pub0", "netns", namespace)
            _run("ip", "-n", self.namespace, "link", "set", port, "master", BRIDGE, "up")
            _run("ip", "-n", namespace, "link", "set", "pub0", "up")
        _run("ip", "-n", namespace, "addr", "replace", f"{address}/{self.network.prefixlen}",
             "dev", "pub0")
        _run("ip", "-n", namespace, "route", "replace", "default", "via", self.gateway)
        self.state.links[port] = namespace
        self._save()
        return port

    def stop(self) -> None:
        subprocess.run(["ip", "link", "del", self.state.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        (self.dir / STATE_FILE).unlink(missing_ok=True)


def _run(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise PublicNetworkError(f"{' '.join(args[:6])}: {proc.stderr.strip()}")
    return proc.stdout
