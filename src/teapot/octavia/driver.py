"""Octavia's `teapot` provider: an Octavia load balancer is one Teapot load balancer.

Mapping. The Octavia load balancer `L` is the Teapot load balancer `octavia-<L's id>` in L's
project, on the Teapot network given as `--vip-network-id`: the Neutron network Teapot registered
for it (by name or id), or its Teapot uuid (see `teapot.octavia.network`). Its VIP is the one Teapot allocates on the public network:
`create_vip_port` makes the Teapot load balancer (empty) and waits for its `vip_address`, which
Octavia then shows; `vip_port_id` is the Teapot load balancer's uuid. Each Octavia listener (TCP)
with a default pool that has members is one Teapot listener `{port, member_port}`, where
`member_port` is the one `protocol_port` of the pool's members; a TCP health monitor is Teapot's
health check (`delay` → `interval`, `max_retries` → `retries`). Teapot sends every listener to the
same members, so pools of different listeners must have the same member addresses. A listener
without a pool, or whose pool has no member, is not in Teapot (connections to it are refused, as
Octavia's amphorae do); so are disabled (`admin_state_up` false) or drained (weight 0) members and
disabled listeners. What Teapot cannot do is refused at once with `UnsupportedOptionError` and a
message that says why: UDP/SCTP/HTTP/HTTPS/PROXY, TLS, L7 policies, session persistence, other
algorithms than ROUND_ROBIN, allowed CIDRs, unequal weights, backup or monitor addresses, members on
different ports in one pool, HTTP health monitors, a chosen VIP address or port, additional VIPs.

Every change is sent while Octavia's API handles the request (Octavia keeps the load balancer
PENDING_* meanwhile, so changes of one load balancer come one at a time): the driver reads the
load balancer as Octavia has it through the driver agent (`DriverLibrary.get_loadbalancer`), applies
the change in flight (not committed yet), and PATCHes Teapot's load balancer with the whole result.
Teapot's own refusals (a member not on the network, ...) come back as `UnsupportedOptionError`.

Status. A thread per change polls Teapot until its load balancer is ACTIVE or ERROR (or gone, for a
delete), then reports through Octavia's driver agent (`update_loadbalancer_status`): the changed
object ACTIVE (or DELETED, or ERROR), the load balancer ACTIVE, and operating statuses as Teapot's
health checks see them then. If the API process restarts while a thread polls, that report is
lost: Octavia leaves the objects PENDING_*, and the user sees them stuck; Teapot's load balancer is
made or changed all the same. A `loadbalancer failover` (or any later change) is refused while it
is pending; an administrator sets the status back with Octavia's tools. (Nothing is polled after
the report: operating statuses are those of that moment.)
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from octavia_lib.api.drivers import driver_lib, provider_base
from octavia_lib.api.drivers import exceptions as lib_exc
from oslo_config import cfg

from teapot.octavia import network as teapot_network
from teapot.octavia import teapot_api

LOG = logging.getLogger(__name__)

VIP_WAIT = 30.0  # seconds create_vip_port waits for Teapot's VIP
STATUS_WAIT = 300.0  # seconds a status thread waits for Teapot to be ACTIVE or ERROR
POLL = 0.5
MAX_INTERVAL = 60  # Teapot's health check interval, seconds


def teapot_name(loadbalancer_id: str) -> str:
    return f"octavia-{loadbalancer_id}"


def _refuse(message: str):
    return lib_exc.UnsupportedOptionError(user_fault_string=message,
                                          operator_fault_string=message)


def _plain(obj: Any, unsets: bool = True) -> dict:
    """An octavia-lib data model (or the dict the driver agent gave) as a plain dict."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return copy.deepcopy(obj)
    return obj.to_dict(recurse=True, render_unsets=unsets)


# -- the Octavia load balancer as one state ----------------------------------------------------------
class State:
    """An Octavia load balancer's listeners and pools (with members and health monitor), by id."""

    def __init__(self, lb: dict):
        self.lb = lb
        self.listeners = {x["listener_id"]: x for x in lb.get("listeners") or []}
        self.pools = {}
        for pool in lb.get("pools") or []:
            self.add_pool(pool)
        for listener in self.listeners.values():  # a graph create names pools in listeners
            pool = listener.get("default_pool")
            if isinstance(pool, dict) and pool.get("pool_id"):
                listener["default_pool_id"] = pool["pool_id"]
                if pool["pool_id"] not in self.pools:
                    self.add_pool(pool)

    def add_pool(self, pool: dict) -> None:
        pool = dict(pool)
        pool["members"] = {m["member_id"]: m for m in pool.get("members") or []}
        self.pools[pool["pool_id"]] = pool
        listener = self.listeners.get(pool.get("listener_id") or "")
        if listener is not None and not listener.get("default_pool_id"):
            listener["default_pool_id"] = pool["pool_id"]

    def remove_pool(self, pool_id: str) -> None:
        self.pools.pop(pool_id, None)
        for listener in self.listeners.values():
            if listener.get("default_pool_id") == pool_id:
                listener["default_pool_id"] = None

    def pool(self, pool_id: str) -> dict:
        try:
            return self.pools[pool_id]
        except KeyError:
            raise lib_exc.DriverError(user_fault_string=f"pool {pool_id} is unknown") from None


def _merged(old: dict, new: Any) -> dict:
    """An update's object: the old one with what the new one sets."""
    return {**old, **_plain(new, unsets=False)}


def _check_listener(x: dict) -> None:
    name = f"listener {x.get('name') or x.get('listener_id')}"
    if (x.get("protocol") or "TCP") != "TCP":
        raise _refuse(f"{name}: Teapot balances TCP only, not {x['protocol']} (no UDP, SCTP, "
                      "HTTP or TLS termination)")
    if x.get("l7policies"):
        raise _refuse(f"{name}: Teapot has no L7 policies (it balances TCP)")
    if x.get("default_tls_container_ref") or x.get("sni_container_refs") or \
            x.get("client_ca_tls_container_ref"):
        raise _refuse(f"{name}: Teapot does not terminate TLS")
    if x.get("allowed_cidrs"):
        raise _refuse(f"{name}: Teapot's load balancers take connections from everywhere "
                      "(no allowed CIDRs)")
    if x.get("insert_headers"):
        raise _refuse(f"{name}: Teapot balances TCP: it inserts no header")
    if (x.get("connection_limit") or -1) != -1:
        raise _refuse(f"{name}: Teapot's load balancers have no connection limit")


def _check_pool(pool: dict) -> int | None:
    """A pool Teapot can serve: the one port of its members (None without members)."""
    name = f"pool {pool.get('name') or pool.get('pool_id')}"
    if (pool.get("protocol") or "TCP") != "TCP":
        raise _refuse(f"{name}: Teapot balances TCP only, not {pool['protocol']}")
    if (pool.get("lb_algorithm") or "ROUND_ROBIN") != "ROUND_ROBIN":
        raise _refuse(f"{name}: Teapot balances ROUND_ROBIN only, not {pool['lb_algorithm']}")
    if pool.get("session_persistence"):
        raise _refuse(f"{name}: Teapot has no session persistence")
    if pool.get("tls_enabled") or pool.get("tls_container_ref") or pool.get("ca_tls_container_ref"):
        raise _refuse(f"{name}: Teapot does not speak TLS to members")
    hm = pool.get("healthmonitor") or {}
    if hm and hm.get("type") not in ("TCP", None):
        raise _refuse(f"{name}: Teapot's health checks are TCP connections, not {hm['type']} "
                      "(use --type TCP)")
    if hm and (hm.get("delay") or 0) > MAX_INTERVAL:
        raise _refuse(f"{name}: Teapot checks members at least every {MAX_INTERVAL} s "
                      f"(delay {hm['delay']})")
    ports, weights = set(), set()
    for m in pool["members"].values():
        who = f"{name}, member {m.get('name') or m.get('address')}"
        if m.get("backup"):
            raise _refuse(f"{who}: Teapot has no backup members")
        if m.get("monitor_address") or m.get("monitor_port"):
            raise _refuse(f"{who}: Teapot checks members at their own address and port")
        if ":" in str(m.get("address")):
            raise _refuse(f"{who}: Teapot's members have IPv4 addresses")
        if m.get("subnet_id") and pool.get("_network") and m["subnet_id"] != pool["_network"]:
            raise _refuse(f"{who}: members are on the load balancer's network "
                          f"({pool['_network']})")
        if _enabled(m):
            ports.add(m.get("protocol_port"))
            weights.add(m.get("weight") if m.get("weight") is not None else 1)
    if len(ports) > 1:
        raise _refuse(f"{name}: Teapot sends a listener to one port of its members; these are on "
                      f"{', '.join(str(p) for p in sorted(ports))}")
    if len(weights) > 1:
        raise _refuse(f"{name}: Teapot weighs every member alike; these have weights "
                      f"{', '.join(str(w) for w in sorted(weights))}")
    return ports.pop() if ports else None


def _enabled(member: dict) -> bool:
    return member.get("admin_state_up") is not False and member.get("weight") != 0


def teapot_spec(state: State) -> dict:
    """Teapot's listeners, members and health check for an Octavia load balancer; refuses (with
    UnsupportedOptionError) what Teapot cannot do."""
    network = state.lb.get("vip_network_id")
    for listener in state.listeners.values():
        _check_listener(listener)
    ports = {}
    for pool in state.pools.values():
        pool["_network"] = network
        ports[pool["pool_id"]] = _check_pool(pool)
    listeners, member_sets, checks = [], {}, {}
    up = state.lb.get("admin_state_up") is not False
    for listener in sorted(state.listeners.values(), key=lambda x: x["protocol_port"]):
        pool = state.pools.get(listener.get("default_pool_id") or "")
        if not up or listener.get("admin_state_up") is False or pool is None or \
                pool.get("admin_state_up") is False or ports[pool["pool_id"]] is None:
            continue
        listeners.append({"protocol": "TCP", "port": listener["protocol_port"],
                          "member_port": ports[pool["pool_id"]]})
        member_sets[pool["pool_id"]] = sorted(
            {m["address"] for m in pool["members"].values() if _enabled(m)})
        hm = pool.get("healthmonitor") or {}
        if hm and hm.get("admin_state_up") is not False:
            checks[pool["pool_id"]] = {"interval": max(float(hm["delay"]), 0.5),
                                       "retries": int(hm["max_retries"])}
    if len({tuple(s) for s in member_sets.values()}) > 1:
        raise _refuse("Teapot sends every listener of a load balancer to the same members: the "
                      "default pools of its listeners must have the same member addresses")
    if len({tuple(sorted(c.items())) for c in checks.values()}) > 1:
        raise _refuse("Teapot has one health check per load balancer: the health monitors of "
                      "its listeners' pools must have the same delay and max retries")
    members = next(iter(member_sets.values()), [])
    return {"listeners": listeners, "members": [{"address": a} for a in members],
            "health_check": next(iter(checks.values()), {"interval": 2.0, "retries": 2})}


# -- the driver --------------------------------------------------------------------------------------
class TeapotProviderDriver(provider_base.ProviderDriver):
    def __init__(self):
        super().__init__()
        teapot_api.register_opts()
        self._library = None
        self._library_lock = threading.Lock()

    # the driver agent
    def library(self) -> driver_lib.DriverLibrary:
        with self._library_lock:
            if self._library is None:
                agent = cfg.CONF.driver_agent
                self._library = driver_lib.DriverLibrary(
                    status_socket=agent.status_socket_path, stats_socket=agent.stats_socket_path,
                    get_socket=agent.get_socket_path)
            return self._library

    def _state(self, loadbalancer_id: str) -> State:
        lb = self.library().get_loadbalancer(loadbalancer_id)
        if lb is None:
            raise lib_exc.DriverError(user_fault_string=f"load balancer {loadbalancer_id} is "
                                                        "unknown to Octavia's driver agent")
        return State(_plain(lb))

    # Teapot
    def _teapot(self, method: str, path: str, json: Any = None) -> Any:
        try:
            return teapot_api.call(method, path, json)
        except teapot_api.TeapotAPIError as e:
            if 400 <= e.status < 500:
                raise _refuse(f"Teapot: {e.detail}") from None
            raise lib_exc.DriverError(user_fault_string=f"Teapot's API failed ({e.status})",
                                      operator_fault_string=str(e)) from None
        except Exception as e:  # noqa: BLE001 - unreachable, auth: the operator's to see
            raise lib_exc.DriverError(user_fault_string="Teapot's API cannot be reached",
                                      operator_fault_string=repr(e)) from None

    def _apply(self, loadbalancer_id: str, state: State, changed: dict[str, list[dict]]) -> None:
        """Send the load balancer's whole spec to Teapot; report when Teapot has applied it."""
        spec = teapot_spec(state)
        self._teapot("PATCH", f"/loadbalancers/{teapot_name(loadbalancer_id)}", spec)
        self._report_later(loadbalancer_id, state, changed)

    # status
    def _report_later(self, loadbalancer_id: str, state: State | None,
                      changed: dict[str, list[dict]], deleting: bool = False) -> None:
        thread = threading.Thread(target=self._report, name=f"teapot-status-{loadbalancer_id}",
                                  args=(loadbalancer_id, state, changed, deleting), daemon=True)
        thread.start()

    def _report(self, loadbalancer_id: str, state: State | None, changed: dict[str, list[dict]],
                deleting: bool) -> None:
        name = teapot_name(loadbalancer_id)
        deadline = time.monotonic() + STATUS_WAIT
        lb = None
        while time.monotonic() < deadline:
            try:
                lb = teapot_api.call("GET", f"/loadbalancers/{name}")
            except Exception as e:  # noqa: BLE001 - keep polling: the API may be restarting
                LOG.warning("Teapot load balancer %s: %s", name, e)
                lb = {"provisioning_status": "PENDING"}
            if lb is None or lb["provisioning_status"] in ("ACTIVE", "ERROR") and not deleting:
                break
            time.sleep(POLL)
        else:
            LOG.error("Teapot load balancer %s was not ACTIVE after %.0f s", name, STATUS_WAIT)
            lb = {"provisioning_status": "ERROR", "operating_status": "ERROR", "members": []}
        status = self._status(loadbalancer_id, state, changed, lb, deleting)
        try:
            self.library().update_loadbalancer_status(status)
        except Exception:  # noqa: BLE001 - nothing else to tell: the operator's log says it
            LOG.exception("Octavia load balancer %s: its status could not be reported",
                          loadbalancer_id)

    @staticmethod
    def _status(loadbalancer_id: str, state: State | None, changed: dict[str, list[dict]],
                lb: dict | None, deleting: bool) -> dict:
        if deleting:
            out = {kind: [{"id": x["id"], "provisioning_status": "DELETED"} for x in objects]
                   for kind, objects in changed.items()}
            out["loadbalancers"] = [{"id": loadbalancer_id, "provisioning_status": "DELETED"}]
            return out
        ok = lb is not None and lb["provisioning_status"] == "ACTIVE"
        out: dict[str, list[dict]] = {}
        for kind, objects in changed.items():
            for x in objects:
                provisioning = x.get("provisioning_status") or ("ACTIVE" if ok else "ERROR")
                out.setdefault(kind, []).append({"id": x["id"],
                                                 "provisioning_status": provisioning})
        operating = (lb or {}).get("operating_status") or "OFFLINE"
        health = {m["address"]: m["operating_status"] for m in (lb or {}).get("members") or []}
        lb_status = {"id": loadbalancer_id, "provisioning_status": "ACTIVE",
                     "operating_status": operating if ok else "ERROR"}
        if "loadbalancers" in changed and not ok:
            lb_status["provisioning_status"] = "ERROR"
        out["loadbalancers"] = [lb_status]
        if state is None:
            return out
        # Octavia made the changed object's parents PENDING_UPDATE too: they are ACTIVE again.
        for kind, ids in (("listeners", state.listeners), ("pools", state.pools)):
            entries = out.setdefault(kind, [])
            for object_id in ids:
                if not any(x["id"] == object_id for x in entries):
                    entries.append({"id": object_id, "provisioning_status": "ACTIVE"})
        if ok:
            for x in out["listeners"]:
                if x["provisioning_status"] != "DELETED":
                    x["operating_status"] = "ONLINE" if operating != "OFFLINE" else "OFFLINE"
            for x in out["pools"]:
                if x["provisioning_status"] != "DELETED":
                    x["operating_status"] = operating
            members = out.setdefault("members", [])
            for pool in state.pools.values():
                monitored = bool(pool.get("healthmonitor"))
                for member_id, m in pool["members"].items():
                    entry = next((x for x in members if x["id"] == member_id), None)
                    if entry is None:
                        entry = {"id": member_id}
                        members.append(entry)
                    if not _enabled(m):
                        entry["operating_status"] = "OFFLINE"
                    elif not monitored:
                        entry["operating_status"] = "NO_MONITOR"
                    else:
                        entry["operating_status"] = health.get(m["address"], "OFFLINE")
        return out

    # -- the VIP and the load balancer ---------------------------------------------------------
    def create_vip_port(self, loadbalancer_id, project_id, vip_dictionary,
                        additional_vip_dicts):
        if additional_vip_dicts:
            raise _refuse("a Teapot load balancer has one VIP (no additional VIPs)")
        if vip_dictionary.get("vip_address"):
            raise _refuse("Teapot allocates the VIP on its public network: leave out "
                          "--vip-address")
        if vip_dictionary.get("vip_port_id"):
            raise _refuse("Teapot allocates the VIP: give --vip-network-id, not a port")
        if vip_dictionary.get("vip_qos_policy_id") or vip_dictionary.get("vip_sg_ids"):
            raise _refuse("Teapot's VIPs have no QoS policy or security groups")
        given = vip_dictionary.get("vip_network_id") or vip_dictionary.get("vip_subnet_id")
        try:
            network = teapot_network.find(given)
        except teapot_api.TeapotAPIError as e:
            raise lib_exc.DriverError(user_fault_string=f"Teapot's API failed ({e.status})",
                                      operator_fault_string=str(e)) from None
        if network is None:
            raise _refuse(f"{given} is not a Teapot network")
        name = teapot_name(loadbalancer_id)
        made = self._teapot("POST", "/loadbalancers", {
            "name": name, "description": f"Octavia load balancer {loadbalancer_id}",
            "network": network["uuid"], "project_id": project_id, "listeners": [],
            "members": []})
        deadline = time.monotonic() + VIP_WAIT
        while not made.get("vip_address"):
            if made["provisioning_status"] == "ERROR" or time.monotonic() > deadline:
                self._forget(name)
                raise lib_exc.DriverError(
                    user_fault_string="Teapot allocated no VIP in time",
                    operator_fault_string=f"{name}: {made.get('status_reason') or 'no VIP'}")
            time.sleep(POLL)
            made = self._teapot("GET", f"/loadbalancers/{made['id']}") or made
        return ({"vip_address": made["vip_address"], "vip_network_id": given,
                 "vip_subnet_id": network["uuid"], "vip_port_id": made["id"],
                 "octavia_owned": False}, [])

    def _forget(self, name: str) -> None:
        try:
            teapot_api.call("DELETE", f"/loadbalancers/{name}")
        except Exception:  # noqa: BLE001 - the conductor's record shows it; log and go on
            LOG.exception("Teapot load balancer %s could not be deleted", name)

    def loadbalancer_create(self, loadbalancer):
        state = State(_plain(loadbalancer))
        changed = {"loadbalancers": [{"id": loadbalancer.loadbalancer_id}],
                   "listeners": [{"id": x} for x in state.listeners],
                   "pools": [{"id": x} for x in state.pools],
                   "members": [{"id": m} for p in state.pools.values() for m in p["members"]],
                   "healthmonitors": [{"id": p["healthmonitor"]["healthmonitor_id"]}
                                      for p in state.pools.values() if p.get("healthmonitor")]}
        try:
            spec = teapot_spec(state)
            self._teapot("PATCH", f"/loadbalancers/{teapot_name(loadbalancer.loadbalancer_id)}",
                         spec)
        except Exception:
            self._forget(teapot_name(loadbalancer.loadbalancer_id))  # Octavia rolls back
            raise
        self._report_later(loadbalancer.loadbalancer_id, state, changed)

    def loadbalancer_update(self, old_loadbalancer, new_loadbalancer):
        lb_id = old_loadbalancer.loadbalancer_id
        state = self._state(lb_id)
        state.lb.update(_plain(new_loadbalancer, unsets=False))
        self._apply(lb_id, state, {})

    def loadbalancer_delete(self, loadbalancer, cascade=False):
        lb = _plain(loadbalancer)
        self._teapot("DELETE", f"/loadbalancers/{teapot_name(lb['loadbalancer_id'])}")
        changed: dict[str, list[dict]] = {}
        if cascade:
            state = State(lb)
            changed = {"listeners": [{"id": x} for x in state.listeners],
                       "pools": [{"id": x} for x in state.pools],
                       "members": [{"id": m} for p in state.pools.values()
                                   for m in p["members"]],
                       "healthmonitors": [{"id": p["healthmonitor"]["healthmonitor_id"]}
                                          for p in state.pools.values()
                                          if p.get("healthmonitor")]}
        self._report_later(lb["loadbalancer_id"], None, changed, deleting=True)

    def loadbalancer_failover(self, loadbalancer_id):
        raise _refuse("Teapot's conductor restores a load balancer's data plane by itself "
                      "(nothing to fail over)")

    # -- listeners -------------------------------------------------------------------------------
    def listener_create(self, listener):
        x = _plain(listener)
        state = self._state(x["loadbalancer_id"])
        state.listeners[x["listener_id"]] = x
        if x.get("default_pool_id") is None and isinstance(x.get("default_pool"), dict):
            state.add_pool(x["default_pool"])
            x["default_pool_id"] = x["default_pool"]["pool_id"]
        self._apply(x["loadbalancer_id"], state, {"listeners": [{"id": x["listener_id"]}]})

    def listener_update(self, old_listener, new_listener):
        x = _merged(_plain(old_listener), new_listener)
        state = self._state(x["loadbalancer_id"])
        state.listeners[x["listener_id"]] = x
        self._apply(x["loadbalancer_id"], state, {"listeners": [{"id": x["listener_id"]}]})

    def listener_delete(self, listener):
        x = _plain(listener)
        state = self._state(x["loadbalancer_id"])
        state.listeners.pop(x["listener_id"], None)
        self._apply(x["loadbalancer_id"], state, {"listeners": [
            {"id": x["listener_id"], "provisioning_status": "DELETED"}]})

    # -- pools -----------------------------------------------------------------------------------
    def pool_create(self, pool):
        p = _plain(pool)
        state = self._state(p["loadbalancer_id"])
        state.add_pool(p)
        self._apply(p["loadbalancer_id"], state, {"pools": [{"id": p["pool_id"]}]})

    def pool_update(self, old_pool, new_pool):
        p = _merged(_plain(old_pool), new_pool)
        state = self._state(p["loadbalancer_id"])
        p["members"] = list(state.pool(p["pool_id"])["members"].values())
        p["healthmonitor"] = state.pool(p["pool_id"]).get("healthmonitor")
        state.add_pool(p)
        self._apply(p["loadbalancer_id"], state, {"pools": [{"id": p["pool_id"]}]})

    def pool_delete(self, pool):
        p = _plain(pool)
        state = self._state(p["loadbalancer_id"])
        gone = state.pools.get(p["pool_id"]) or {"members": {}}
        state.remove_pool(p["pool_id"])
        changed = {"pools": [{"id": p["pool_id"], "provisioning_status": "DELETED"}],
                   "members": [{"id": m, "provisioning_status": "DELETED"}
                               for m in gone["members"]]}
        if gone.get("healthmonitor"):
            changed["healthmonitors"] = [{"id": gone["healthmonitor"]["healthmonitor_id"],
                                          "provisioning_status": "DELETED"}]
        self._apply(p["loadbalancer_id"], state, changed)

    # -- members ---------------------------------------------------------------------------------
    def _pool_state(self, pool_id: str) -> tuple[str, State, dict]:
        pool = self.library().get_pool(pool_id)
        if pool is None:
            raise lib_exc.DriverError(user_fault_string=f"pool {pool_id} is unknown")
        lb_id = _plain(pool)["loadbalancer_id"]
        state = self._state(lb_id)
        return lb_id, state, state.pool(pool_id)

    def member_create(self, member):
        m = _plain(member)
        lb_id, state, pool = self._pool_state(m["pool_id"])
        pool["members"][m["member_id"]] = m
        self._apply(lb_id, state, {"members": [{"id": m["member_id"]}]})

    def member_update(self, old_member, new_member):
        m = _merged(_plain(old_member), new_member)
        lb_id, state, pool = self._pool_state(m["pool_id"])
        pool["members"][m["member_id"]] = m
        self._apply(lb_id, state, {"members": [{"id": m["member_id"]}]})

    def member_delete(self, member):
        m = _plain(member)
        lb_id, state, pool = self._pool_state(m["pool_id"])
        pool["members"].pop(m["member_id"], None)
        self._apply(lb_id, state, {"members": [{"id": m["member_id"],
                                                "provisioning_status": "DELETED"}]})

    def member_batch_update(self, pool_id, members):
        lb_id, state, pool = self._pool_state(pool_id)
        new = {x["member_id"]: x for x in (_plain(m) for m in members)}
        changed = [{"id": i, "provisioning_status": "DELETED"} for i in pool["members"]
                   if i not in new] + [{"id": i} for i in new]
        pool["members"] = new
        self._apply(lb_id, state, {"members": changed})

    # -- health monitors -------------------------------------------------------------------------
    def _monitor(self, hm: dict, keep: bool) -> None:
        lb_id, state, pool = self._pool_state(hm["pool_id"])
        pool["healthmonitor"] = hm if keep else None
        changed = {"id": hm["healthmonitor_id"]}
        if not keep:
            changed["provisioning_status"] = "DELETED"
        self._apply(lb_id, state, {"healthmonitors": [changed]})

    def health_monitor_create(self, healthmonitor):
        self._monitor(_plain(healthmonitor), keep=True)

    def health_monitor_update(self, old_healthmonitor, new_healthmonitor):
        self._monitor(_merged(_plain(old_healthmonitor), new_healthmonitor), keep=True)

    def health_monitor_delete(self, healthmonitor):
        self._monitor(_plain(healthmonitor), keep=False)

    # -- what Teapot has not -----------------------------------------------------------------------
    def l7policy_create(self, l7policy):
        raise _refuse("Teapot has no L7 policies (it balances TCP)")

    def l7rule_create(self, l7rule):
        raise _refuse("Teapot has no L7 rules (it balances TCP)")

    def get_supported_flavor_metadata(self):
        return {}

    def validate_flavor(self, flavor_metadata):
        if flavor_metadata:
            raise _refuse("Teapot's load balancers have no flavors")

    def get_supported_availability_zone_metadata(self):
        return {}

    def validate_availability_zone(self, availability_zone_metadata):
        if availability_zone_metadata:
            raise _refuse("Teapot's load balancers have no availability zones")
