"""Layer-2 probes: raw Ethernet frames sent and counted inside network namespaces.

Isolation between tenants is shown by frames, not by configuration: a probe sends broadcast and
unknown-unicast frames of a private EtherType carrying a marker, and receivers count the frames with
that marker. ARP requests are sent the same way. On a trunk, each frame's 802.1Q tag is read from the
socket's PACKET_AUXDATA (the kernel moves a received tag out of the frame into metadata) or from the
frame itself when it is still inline.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_PROBE = 0x88B5  # IEEE local experimental EtherType 1
BROADCAST = b"\xff" * 6
CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
_AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def in_netns(namespace: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a thread that has joined the named network namespace, and return its result.

    Sockets keep the namespace they were made in, so a socket opened this way can be used from any
    thread afterwards. The calling thread's namespace is never changed.
    """
    result: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into network namespace {namespace!r}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def raw_socket(namespace: str, interface: str = "eth0", protocol: int = ETH_P_ALL) -> socket.socket:
    """An AF_PACKET socket bound to `interface` in `namespace`, reporting VLAN tags as auxdata."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.bind((interface, protocol))
        s.setblocking(False)
        return s

    return in_netns(namespace, make)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def interface_mac(sock: socket.socket) -> bytes:
    return sock.getsockname()[4]


def probe_frame(src: bytes, dst: bytes, marker: bytes, vlan: int | None = None) -> bytes:
    """An Ethernet frame of the probe EtherType whose payload starts with `marker`."""
    tag = struct.pack("!HH", ETH_P_8021Q, vlan) if vlan is not None else b""
    payload = marker.ljust(46, b"\0")
    return dst + src + tag + struct.pack("!H", ETH_P_PROBE) + payload


def arp_request(src: bytes, sender_ip: str, target_ip: str, vlan: int | None = None) -> bytes:
    """A broadcast ARP who-has for `target_ip`."""
    tag = struct.pack("!HH", ETH_P_8021Q, vlan) if vlan is not None else b""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src, socket.inet_aton(sender_ip),
                      b"\0" * 6, socket.inet_aton(target_ip))
    return BROADCAST + src + tag + struct.pack("!H", ETH_P_ARP) + arp


@dataclass(frozen=True)
class Frame:
    data: bytes  # as received; an inline 802.1Q tag stays in it
    vlan: int | None  # the frame's 802.1Q VLAN id, from auxdata or inline, None when untagged

    @property
    def dst(self) -> bytes:
        return self.data[0:6]

    @property
    def src(self) -> bytes:
        return self.data[6:12]

    @property
    def ethertype(self) -> int:
        (etype,) = struct.unpack("!H", self.data[12:14])
        if etype == ETH_P_8021Q:
            (etype,) = struct.unpack("!H", self.data[16:18])
        return etype

    @property
    def payload(self) -> bytes:
        offset = 18 if struct.unpack("!H", self.data[12:14])[0] == ETH_P_8021Q else 14
        return self.data[offset:]

    def is_probe(self, marker: bytes) -> bool:
        return self.ethertype == ETH_P_PROBE and self.payload.startswith(marker)

    def is_arp_for(self, target_ip: str) -> bool:
        if self.ethertype != ETH_P_ARP or len(self.payload) < 28:
            return False
        return self.payload[24:28] == socket.inet_aton(target_ip)


def receive(sock: socket.socket) -> list[Frame]:
    """Every frame waiting on `sock`, without blocking."""
    frames = []
    while True:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(_AUXDATA.size))
        except BlockingIOError:
            return frames
        vlan = None
        for level, kind, value in ancdata:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= _AUXDATA.size:
                status, _len, _snap, _mac, _net, tci, _tpid = _AUXDATA.unpack(value[: _AUXDATA.size])
                if status & TP_STATUS_VLAN_VALID:
                    vlan = tci & 0x0FFF
        if vlan is None and len(data) >= 18 and struct.unpack("!H", data[12:14])[0] == ETH_P_8021Q:
            vlan = struct.unpack("!H", data[14:16])[0] & 0x0FFF
        frames.append(Frame(data, vlan))


def collect(sockets: dict[str, socket.socket], until: Callable[[dict[str, list[Frame]]], bool],
            timeout: float = 5.0, settle: float = 0.3) -> dict[str, list[Frame]]:
    """Frames received on each socket, read until `until(frames)` holds (or `timeout` passes),
    then for `settle` seconds more so that frames which should not arrive have had the same chance."""
    seen: dict[str, list[Frame]] = {name: [] for name in sockets}
    by_fd = {s.fileno(): name for name, s in sockets.items()}
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    while True:
        now = time.monotonic()
        if settle_until is None and (until(seen) or now >= deadline):
            settle_until = now + settle
        if settle_until is not None and now >= settle_until:
            return seen
        wait = (settle_until if settle_until is not None else deadline) - now
        ready, _, _ = select.select(list(by_fd), [], [], max(wait, 0.0))
        for fd in ready:
            seen[by_fd[fd]].extend(receive(sockets[by_fd[fd]]))


def send_all(sock: socket.socket, frames: Iterable[bytes]) -> int:
    n = 0
    for frame in frames:
        sock.send(frame)
        n += 1
    return n
