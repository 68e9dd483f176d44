"""The host state machine: Metal³ BareMetalHost's provisioning states, and every change between them.

The conductor asks `plan()` what to do next for a host, has the provisioner do it, and hands the
provisioner's `Outcome` to `advance()`, which returns the host's new status. Both are pure functions of
their arguments; all changes of state go through `_enter()`, checked against `TRANSITIONS`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

REGISTERING = "registering"
INSPECTING = "inspecting"
PREPARING = "preparing"
AVAILABLE = "available"
PROVISIONING = "provisioning"
PROVISIONED = "provisioned"
DEPROVISIONING = "deprovisioning"
DELETING = "deleting"
GONE = "gone"  # not a BareMetalHost state: the record is to be removed

TRANSITIONS: dict[str, frozenset[str]] = {
    REGISTERING: frozenset({INSPECTING, DELETING}),
    INSPECTING: frozenset({PREPARING, REGISTERING, DELETING}),
    PREPARING: frozenset({AVAILABLE, REGISTERING, DELETING}),
    AVAILABLE: frozenset({PROVISIONING, REGISTERING, DELETING}),
    PROVISIONING: frozenset({PROVISIONED, DEPROVISIONING}),
    PROVISIONED: frozenset({DEPROVISIONING}),
    DEPROVISIONING: frozenset({AVAILABLE, DELETING}),
    DELETING: frozenset({GONE}),
}
STATES = tuple(TRANSITIONS)

# errorType values (BareMetalHost's enum)
REGISTRATION_ERROR = "registration error"
INSPECTION_ERROR = "inspection error"
PREPARATION_ERROR = "preparation error"
PROVISIONING_ERROR = "provisioning error"
POWER_ERROR = "power management error"

# operationHistory keys: the state that opens each, closed when the state is left
_HISTORY = {REGISTERING: "register", INSPECTING: "inspect", PROVISIONING: "provision",
            DEPROVISIONING: "deprovision"}


class InvalidTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class HostView:
    """What the state machine needs to know of a host."""

    name: str
    spec: dict
    state: str
    status: dict
    deleting: bool = False
    bmc_version: int = 1  # bumped by the API whenever BMC address, credentials or boot MAC change


@dataclass(frozen=True)
class Operation:
    """A provisioner operation. `on_done` is the state entered when it completes (None: stay)."""

    name: str  # register | inspect | prepare | provision | deprovision | power | delete
    error_type: str | None
    on_done: str | None
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """A change of state that needs no provisioner call."""

    to: str


@dataclass(frozen=True)
class Outcome:
    """What a provisioner reports: done, failed (error), or under way (neither)."""

    done: bool = False
    error: str | None = None
    retry_after: float | None = None
    observed: dict = field(default_factory=dict)  # e.g. {"poweredOn": True, "ID": "<node uuid>"}
    issued: str | None = None  # the provisioner started this action; it reports its end later
    # A dependency the provisioner needs is down ("waiting for Ironic: connection refused"): not
    # the host's error, nothing counted; the step is tried again shortly.
    waiting: str | None = None


# Bookkeeping kept in status for the conductor, not shown by the API.
INTERNAL_STATUS = ("issued", "registeredVersion", "waiting")
WAITING_DELAY = 3.0  # seconds before a step that waited for a dependency is tried again


@dataclass(frozen=True)
class Next:
    """The host's new status and when the conductor should look at it again (seconds from now)."""

    state: str
    status: dict
    delay: float
    settled: bool = False


def initial_status(now: float | None = None) -> dict:
    status: dict[str, Any] = {
        "operationalStatus": "discovered",
        "errorMessage": "",
        "errorCount": 0,
        "poweredOn": False,
        "provisioning": {"state": "", "ID": ""},
        "operationHistory": {},
    }
    return _enter(REGISTERING, status, now or time.time(), initial=True)


def plan(host: HostView) -> Operation | Transition:
    """The next step for `host` in its current state."""
    spec, state = host.spec, host.state
    image = spec.get("image")
    if state == REGISTERING:
        if host.deleting:
            return Transition(DELETING)
        return Operation("register", REGISTRATION_ERROR, INSPECTING, {"bmc_version": host.bmc_version})
    if state == INSPECTING:
        if host.deleting:
            return Transition(DELETING)
        return Operation("inspect", INSPECTION_ERROR, PREPARING,
                         {"disabled": spec.get("inspectionMode") == "disabled"})
    if state == PREPARING:
        if host.deleting:
            return Transition(DELETING)
        return Operation("prepare", PREPARATION_ERROR, AVAILABLE,
                         {"automated_clean": spec.get("automatedCleaningMode", "metadata") != "disabled"})
    if state == AVAILABLE:
        if host.deleting:
            return Transition(DELETING)
        if host.status.get("registeredVersion", 0) < host.bmc_version:
            return Transition(REGISTERING)
        if image:
            return Transition(PROVISIONING)
        return Operation("power", POWER_ERROR, None, {"on": bool(spec.get("online"))})
    if state == PROVISIONING:
        if host.deleting or not image:
            return Transition(DEPROVISIONING)
        return Operation("provision", PROVISIONING_ERROR, PROVISIONED, {"image": image})
    if state == PROVISIONED:
        if host.deleting or not image or image != host.status["provisioning"].get("image"):
            return Transition(DEPROVISIONING)
        return Operation("power", POWER_ERROR, None, {"on": bool(spec.get("online"))})
    if state == DEPROVISIONING:
        return Operation("deprovision", PROVISIONING_ERROR, DELETING if host.deleting else AVAILABLE,
                         {"automated_clean": spec.get("automatedCleaningMode", "metadata") != "disabled"})
    if state == DELETING:
        return Operation("delete", None, GONE)
    raise InvalidTransition(f"host {host.name} is in unknown state {state!r}")


def _now_iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _enter(state: str, status: dict, now: float, initial: bool = False) -> dict:
    old = status["provisioning"]["state"]
    if not initial and state not in TRANSITIONS.get(old, ()):
        raise InvalidTransition(f"no transition from {old!r} to {state!r}")
    history = status.setdefault("operationHistory", {})
    if old in _HISTORY and not initial:
        history.setdefault(_HISTORY[old], {})["end"] = _now_iso(now)
    if state in _HISTORY:
        history[_HISTORY[state]] = {"start": _now_iso(now), "end": None}
    status["provisioning"]["state"] = state
    status["lastUpdated"] = _now_iso(now)
    return status


def transition(host: HostView, to: str, now: float) -> Next:
    status = _enter(to, copy.deepcopy(host.status), now)
    status.pop("issued", None)
    if to == REGISTERING:
        status["operationalStatus"] = "discovered"
    return Next(to, status, 0.0)


def advance(host: HostView, op: Operation, outcome: Outcome, now: float, *, busy: float,
            resync: float, max_backoff: float) -> Next:
    """The host's status after the provisioner reported `outcome` for `op`."""
    status = copy.deepcopy(host.status)
    for key, value in outcome.observed.items():
        if key == "ID":
            status["provisioning"]["ID"] = value
        else:
            status[key] = value
    if outcome.issued:
        status["issued"] = outcome.issued
    if outcome.waiting:
        status["waiting"] = outcome.waiting
        return Next(host.state, status, WAITING_DELAY)
    status.pop("waiting", None)
    if outcome.error:
        status.pop("issued", None)
        count = status.get("errorCount", 0) + 1
        status.update(operationalStatus="error", errorMessage=outcome.error, errorCount=count,
                      lastUpdated=_now_iso(now))
        if op.error_type:
            status["errorType"] = op.error_type
        return Next(host.state, status, min(2.0 ** min(count, 32), max_backoff))
    if not outcome.done:
        return Next(host.state, status, outcome.retry_after if outcome.retry_after is not None else busy)
    status.pop("issued", None)
    if status.get("operationalStatus") != "OK" or status.get("errorCount"):
        status.update(operationalStatus="OK", errorMessage="", errorCount=0)
        status.pop("errorType", None)
        status["lastUpdated"] = _now_iso(now)
    if op.name == "register":
        status["registeredVersion"] = op.args["bmc_version"]
    if op.on_done is None:
        return Next(host.state, status, resync, settled=True)
    if op.on_done == PROVISIONED:
        status["provisioning"]["image"] = copy.deepcopy(op.args["image"])
    if op.on_done == AVAILABLE:
        status["provisioning"].pop("image", None)
    state = op.on_done
    if state != GONE:
        status = _enter(state, status, now)
    return Next(state, status, 0.0)
