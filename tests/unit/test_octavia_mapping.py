"""Octavia's load balancer as Teapot's: the provider driver's mapping and its refusals (pure)."""

from __future__ import annotations

import pytest
from octavia_lib.api.drivers import exceptions as lib_exc

from teapot.octavia.driver import State, teapot_spec


def _lb(listeners=(), pools=()):
    return {"loadbalancer_id": "lb", "vip_network_id": "net", "admin_state_up": True,
            "listeners": list(listeners), "pools": list(pools)}


def _pool(pool_id, listener_id, members, hm=None, **kw):
    return {"pool_id": pool_id, "listener_id": listener_id, "protocol": "TCP",
            "lb_algorithm": "ROUND_ROBIN", "healthmonitor": hm, **kw,
            "members": [{"member_id": f"{pool_id}-{i}", "address": a, "protocol_port": p,
                         "admin_state_up": True, "weight": 1} for i, (a, p) in enumerate(members)]}


def test_a_listener_with_a_pool_is_a_teapot_listener_to_its_members_port():
    state = State(_lb([{"listener_id": "l", "protocol": "TCP", "protocol_port": 80}],
                      [_pool("p", "l", [("10.20.0.2", 8080), ("10.20.0.3", 8080)],
                             {"type": "TCP", "delay": 3, "max_retries": 4})]))
    assert teapot_spec(state) == {
        "listeners": [{"protocol": "TCP", "port": 80, "member_port": 8080}],
        "members": [{"address": "10.20.0.2"}, {"address": "10.20.0.3"}],
        "health_check": {"interval": 3.0, "retries": 4}}


def test_listeners_without_pool_or_members_are_left_out():
    state = State(_lb([{"listener_id": "a", "protocol": "TCP", "protocol_port": 80},
                       {"listener_id": "b", "protocol": "TCP", "protocol_port": 81}],
                      [_pool("p", "b", [])]))
    assert teapot_spec(state)["listeners"] == []


@pytest.mark.parametrize("listener,pool,words", [
    ({"protocol": "UDP"}, {}, "TCP only"),
    ({"l7policies": [{"id": "x"}]}, {}, "L7"),
    ({}, {"lb_algorithm": "LEAST_CONNECTIONS"}, "ROUND_ROBIN"),
    ({}, {"session_persistence": {"type": "SOURCE_IP"}}, "persistence"),
    ({}, {"healthmonitor": {"type": "HTTP", "delay": 1, "max_retries": 1}}, "TCP connections"),
])
def test_what_teapot_cannot_do_is_refused_saying_why(listener, pool, words):
    state = State(_lb([{"listener_id": "l", "protocol": "TCP", "protocol_port": 80, **listener}],
                      [{**_pool("p", "l", [("10.20.0.2", 8080)]), **pool}]))
    with pytest.raises(lib_exc.UnsupportedOptionError) as e:
        teapot_spec(state)
    assert words in e.value.user_fault_string


def test_members_on_two_ports_or_two_member_sets_are_refused():
    with pytest.raises(lib_exc.UnsupportedOptionError, match="one port"):
        teapot_spec(State(_lb([{"listener_id": "l", "protocol": "TCP", "protocol_port": 80}],
                              [_pool("p", "l", [("10.20.0.2", 8080), ("10.20.0.3", 8081)])])))
    with pytest.raises(lib_exc.UnsupportedOptionError) as e:
        teapot_spec(State(_lb([{"listener_id": "a", "protocol": "TCP", "protocol_port": 80},
                               {"listener_id": "b", "protocol": "TCP", "protocol_port": 81}],
                              [_pool("p", "a", [("10.20.0.2", 8080)]),
                               _pool("q", "b", [("10.20.0.3", 8080)])])))
    assert "same members" in e.value.user_fault_string
