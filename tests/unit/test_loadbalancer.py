"""The box's load balancers and public network, in their pure parts: HAProxy's configuration from a
spec, and the public range chosen to overlap no route of the machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from teapot.drivers.loadbalancer.base import Listener, Spec
from teapot.drivers.loadbalancer.box import render, running
from teapot.net.public import CANDIDATES, PublicNetworkError, choose_cidr


def test_haproxy_sends_each_listener_to_every_member_with_checks():
    spec = Spec("c7", 120, "10.20.0.250/24", "172.31.250.10", (Listener(6443, 6443),
                                                                Listener(80, 8080)),
                ("10.20.0.2", "10.20.0.3"), check_interval=1.5, check_fall=3)
    text = render(spec, Path("/run/x.sock"))
    assert "mode tcp" in text and "stats socket /run/x.sock mode 600" in text
    assert "frontend l6443\n    bind :6443\n    default_backend l6443" in text
    assert "    server m0 10.20.0.2:6443 check\n    server m1 10.20.0.3:6443 check" in text
    assert "    server m1 10.20.0.3:8080 check" in text
    assert text.count("default-server inter 1500ms fall 3 rise 1") == 2


def test_a_pidfile_names_a_running_haproxy_only(tmp_path):
    pidfile = tmp_path / "haproxy.pid"
    assert running(pidfile) is None
    pidfile.write_text("1\n")  # init, not HAProxy
    assert running(pidfile) is None
    pidfile.write_text("not a pid")
    assert running(pidfile) is None


def test_the_public_range_avoids_the_machines_routes():
    first = ipaddress.IPv4Network(CANDIDATES[0])
    assert choose_cidr(taken=[ipaddress.IPv4Network("192.0.2.0/24")]) == CANDIDATES[0]
    assert choose_cidr(taken=[ipaddress.IPv4Network("172.31.0.0/16")]) == CANDIDATES[1]
    # a route of the machine's into the range it asks for: refused, naming the clash
    with pytest.raises(PublicNetworkError, match=f"overlaps {first.supernet(8)}"):
        choose_cidr(str(first), taken=[first.supernet(8)])
    with pytest.raises(PublicNetworkError, match="every range"):
        choose_cidr(taken=[ipaddress.IPv4Network("0.0.0.0/1"), ipaddress.IPv4Network("128.0.0.0/1")])
    # loopback routes never count
    assert choose_cidr(taken=[ipaddress.IPv4Network("127.0.0.0/8")]) == CANDIDATES[0]
