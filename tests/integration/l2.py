"""Frames counted in the box's host namespaces: what proves tenant isolation."""

from __future__ import annotations

import os

from teapot.net import probe
from teapot.net.fabric import Fabric

NOBODY = "10.250.0.99"  # an address no host has: ARP for it is flooded, never answered
UNKNOWN_MAC = bytes.fromhex("02deadbeef01")
N = 5
ALL = {"broadcast": N, "unknown_unicast": N, "arp": N}
NONE = {"broadcast": 0, "unknown_unicast": 0, "arp": 0}


def ns(fabric: Fabric, host: str) -> str:
    trunk = fabric.trunk
    return trunk.namespace if trunk and trunk.host == host else fabric.host(host).namespace


def flood(fabric: Fabric, sender: str, receivers: list[str], expect: set[str],
          vlan: int | None = None, sender_ip: str = "10.250.0.250") -> dict[str, dict[str, int]]:
    """Send N broadcast, N unknown-unicast and N ARP frames from `sender` (tagged with `vlan`,
    from the trunk) and count, per receiver, the frames of each kind that arrived (waiting until
    the `expect`ed receivers have them all)."""
    marker = b"TEAPOT" + os.urandom(8)
    sockets = {r: probe.raw_socket(ns(fabric, r)) for r in receivers}
    tx = probe.raw_socket(ns(fabric, sender))
    try:
        src = probe.interface_mac(tx)
        frames = ([probe.probe_frame(src, probe.BROADCAST, marker, vlan)] * N
                  + [probe.probe_frame(src, UNKNOWN_MAC, marker, vlan)] * N
                  + [probe.arp_request(src, sender_ip, NOBODY, vlan)] * N)
        for s in sockets.values():
            probe.receive(s)  # drop what arrived before
        probe.send_all(tx, frames)

        def counts(seen: dict[str, list[probe.Frame]]) -> dict[str, dict[str, int]]:
            out = {}
            for r, got in seen.items():
                mine = [f for f in got if f.src == src]
                out[r] = {
                    "broadcast": sum(f.is_probe(marker) and f.dst == probe.BROADCAST for f in mine),
                    "unknown_unicast": sum(f.is_probe(marker) and f.dst == UNKNOWN_MAC for f in mine),
                    "arp": sum(f.is_arp_for(NOBODY) for f in mine),
                }
            return out

        seen = probe.collect(sockets, lambda s: all(
            sum(c.values()) >= 3 * N for r, c in counts(s).items() if r in expect))
        return counts(seen)
    finally:
        tx.close()
        for s in sockets.values():
            s.close()


def ping(fabric: Fabric, host: str, ip: str) -> bool:
    return fabric.exec_in(host, "ping", "-c", "2", "-i", "0.2", "-W", "1", ip).returncode == 0


def tags_on_trunk(fabric: Fabric, sender: str) -> list[int | None]:
    """The 802.1Q tags the trunk sees on N broadcast frames `sender` sends."""
    marker = b"TEAPOT" + os.urandom(8)
    sock = probe.raw_socket(ns(fabric, fabric.trunk.host))
    tx = probe.raw_socket(ns(fabric, sender))
    try:
        src = probe.interface_mac(tx)
        probe.send_all(tx, [probe.probe_frame(src, probe.BROADCAST, marker)] * N)
        seen = probe.collect({"up": sock}, lambda s: sum(f.is_probe(marker) for f in s["up"]) >= N)
        return [f.vlan for f in seen["up"] if f.is_probe(marker)]
    finally:
        sock.close()
        tx.close()
