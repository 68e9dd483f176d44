"""The host state machine (teapot.resources.host): plan(), advance(), transition(), initial_status().

Everything here is pure: hosts are HostView values built by `_host()`, and time is passed in.
"""

from __future__ import annotations

import copy
import time

import pytest

from teapot.resources import host as hsm
from teapot.resources.host import (
    AVAILABLE,
    DELETING,
    DEPROVISIONING,
    GONE,
    INSPECTING,
    PREPARING,
    PROVISIONED,
    PROVISIONING,
    REGISTERING,
    HostView,
    InvalidTransition,
    Operation,
    Outcome,
    Transition,
)

NOW = 1_700_000_000.0
BUSY, RESYNC, MAX_BACKOFF = 1.5, 15.0, 300.0

IMAGE = {
    "url": "http://images.example.com/ubuntu.qcow2",
    "checksum": "a" * 64,
    "checksumType": "sha256",
    "format": "qcow2",
}
OTHER_IMAGE = {**IMAGE, "url": "http://images.example.com/fedora.qcow2"}


def _spec(**changes) -> dict:
    spec = {
        "online": True,
        "bootMACAddress": "52:54:00:aa:bb:cc",
        "bmc": {"address": "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1",
                "credentialsName": "node-0-bmc-secret"},
    }
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


def _status(state: str, **changes) -> dict:
    status = hsm.initial_status(NOW - 100)
    status["provisioning"]["state"] = state
    status["registeredVersion"] = 1
    status.update(changes)
    return status


def _host(state: str, spec: dict | None = None, status: dict | None = None, *,
          deleting: bool = False, bmc_version: int = 1) -> HostView:
    return HostView(name="node-0", spec=_spec() if spec is None else spec, state=state,
                    status=_status(state) if status is None else status, deleting=deleting,
                    bmc_version=bmc_version)


def _provisioned(spec: dict | None = None, recorded: dict | None = IMAGE, **kw) -> HostView:
    status = _status(PROVISIONED)
    if recorded is not None:
        status["provisioning"]["image"] = copy.deepcopy(recorded)
    return _host(PROVISIONED, _spec(image=IMAGE) if spec is None else spec, status, **kw)


def _advance(host: HostView, op: Operation, outcome: Outcome, now: float = NOW) -> hsm.Next:
    return hsm.advance(host, op, outcome, now, busy=BUSY, resync=RESYNC, max_backoff=MAX_BACKOFF)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# --- initial_status ---------------------------------------------------------------------------------


def test_initial_status_is_registering_and_opens_register_history():
    status = hsm.initial_status(NOW)
    assert status["provisioning"]["state"] == REGISTERING
    assert status["provisioning"]["ID"] == ""
    assert status["operationalStatus"] == "discovered"
    assert status["errorCount"] == 0
    assert status["poweredOn"] is False
    assert status["operationHistory"] == {"register": {"start": _iso(NOW), "end": None}}
    assert status["lastUpdated"] == _iso(NOW)


# --- plan(): each state -------------------------------------------------------------------------------


def test_plan_registering_registers_with_the_bmc_version():
    step = hsm.plan(_host(REGISTERING, bmc_version=3))
    assert step == Operation("register", hsm.REGISTRATION_ERROR, INSPECTING, {"bmc_version": 3})


@pytest.mark.parametrize("mode, disabled", [(None, False), ("agent", False), ("disabled", True)])
def test_plan_inspecting_inspects(mode, disabled):
    step = hsm.plan(_host(INSPECTING, _spec(inspectionMode=mode)))
    assert step == Operation("inspect", hsm.INSPECTION_ERROR, PREPARING, {"disabled": disabled})


@pytest.mark.parametrize("mode, clean", [(None, True), ("metadata", True), ("disabled", False)])
def test_plan_preparing_prepares_with_automated_clean_from_spec(mode, clean):
    step = hsm.plan(_host(PREPARING, _spec(automatedCleaningMode=mode)))
    assert step == Operation("prepare", hsm.PREPARATION_ERROR, AVAILABLE, {"automated_clean": clean})


@pytest.mark.parametrize("online, on", [(True, True), (False, False), (None, False)])
def test_plan_available_without_image_powers_as_spec_online_says(online, on):
    step = hsm.plan(_host(AVAILABLE, _spec(online=online)))
    assert step == Operation("power", hsm.POWER_ERROR, None, {"on": on})


def test_plan_available_with_image_starts_provisioning():
    assert hsm.plan(_host(AVAILABLE, _spec(image=IMAGE))) == Transition(PROVISIONING)


def test_plan_available_registers_again_when_bmc_version_is_newer_than_registered():
    status = _status(AVAILABLE, registeredVersion=1)
    assert hsm.plan(_host(AVAILABLE, status=status, bmc_version=2)) == Transition(REGISTERING)
    # re-registration comes before provisioning
    assert hsm.plan(_host(AVAILABLE, _spec(image=IMAGE), status, bmc_version=2)) == Transition(REGISTERING)
    # the same version is not registered again
    status = _status(AVAILABLE, registeredVersion=2)
    assert isinstance(hsm.plan(_host(AVAILABLE, status=status, bmc_version=2)), Operation)


def test_plan_provisioning_provisions_the_spec_image():
    step = hsm.plan(_host(PROVISIONING, _spec(image=IMAGE)))
    assert step == Operation("provision", hsm.PROVISIONING_ERROR, PROVISIONED, {"image": IMAGE})


def test_plan_provisioning_without_image_deprovisions():
    assert hsm.plan(_host(PROVISIONING, _spec())) == Transition(DEPROVISIONING)


@pytest.mark.parametrize("online, on", [(True, True), (False, False)])
def test_plan_provisioned_with_same_image_powers_as_spec_online_says(online, on):
    step = hsm.plan(_provisioned(_spec(image=IMAGE, online=online)))
    assert step == Operation("power", hsm.POWER_ERROR, None, {"on": on})


def test_plan_provisioned_image_cleared_deprovisions():
    assert hsm.plan(_provisioned(_spec())) == Transition(DEPROVISIONING)


def test_plan_provisioned_image_changed_deprovisions():
    assert hsm.plan(_provisioned(_spec(image=OTHER_IMAGE))) == Transition(DEPROVISIONING)
    changed_checksum = {**IMAGE, "checksum": "b" * 64}
    assert hsm.plan(_provisioned(_spec(image=changed_checksum))) == Transition(DEPROVISIONING)


def test_plan_provisioned_with_no_recorded_image_deprovisions():
    assert hsm.plan(_provisioned(recorded=None)) == Transition(DEPROVISIONING)


@pytest.mark.parametrize("mode, clean", [(None, True), ("disabled", False)])
def test_plan_deprovisioning_deprovisions_to_available(mode, clean):
    step = hsm.plan(_host(DEPROVISIONING, _spec(automatedCleaningMode=mode)))
    assert step == Operation("deprovision", hsm.PROVISIONING_ERROR, AVAILABLE,
                             {"automated_clean": clean})


def test_plan_deleting_deletes_to_gone():
    assert hsm.plan(_host(DELETING)) == Operation("delete", None, GONE)


@pytest.mark.parametrize("state, expected", [
    (REGISTERING, Transition(DELETING)),
    (INSPECTING, Transition(DELETING)),
    (PREPARING, Transition(DELETING)),
    (AVAILABLE, Transition(DELETING)),
    (PROVISIONING, Transition(DEPROVISIONING)),
    (PROVISIONED, Transition(DEPROVISIONING)),
    (DEPROVISIONING, Operation("deprovision", hsm.PROVISIONING_ERROR, DELETING,
                               {"automated_clean": True})),
    (DELETING, Operation("delete", None, GONE)),
])
def test_plan_when_deleting(state, expected):
    host = _provisioned(deleting=True) if state == PROVISIONED else _host(
        state, _spec(image=IMAGE), deleting=True)
    assert hsm.plan(host) == expected


def test_plan_available_deleting_wins_over_reregistration():
    status = _status(AVAILABLE, registeredVersion=1)
    assert hsm.plan(_host(AVAILABLE, status=status, deleting=True, bmc_version=5)) == Transition(DELETING)


def test_plan_unknown_state_is_an_error():
    with pytest.raises(InvalidTransition, match="unknown state"):
        hsm.plan(_host("adopting"))


def _variants():
    for state in hsm.STATES:
        for deleting in (False, True):
            for spec in (_spec(), _spec(image=IMAGE), _spec(image=OTHER_IMAGE)):
                host = _host(state, spec, deleting=deleting)
                if state == PROVISIONED:
                    host = _provisioned(spec, deleting=deleting)
                yield host
        yield _host(state, bmc_version=2)


def test_every_planned_step_is_an_allowed_transition():
    for host in _variants():
        step = hsm.plan(host)
        if isinstance(step, Transition):
            assert step.to in hsm.TRANSITIONS[host.state], (host.state, step)
            assert hsm.transition(host, step.to, NOW).state == step.to
        elif step.on_done is not None:
            assert step.on_done in hsm.TRANSITIONS[host.state], (host.state, step)


# --- advance() ----------------------------------------------------------------------------------------


def test_advance_error_records_the_error_and_backs_off():
    status = _status(INSPECTING, errorCount=2, issued="inspect")
    host = _host(INSPECTING, status=status)
    op = hsm.plan(host)
    nxt = _advance(host, op, Outcome(error="BMC unreachable"))
    assert nxt.state == INSPECTING
    assert nxt.status["provisioning"]["state"] == INSPECTING
    assert nxt.status["errorCount"] == 3
    assert nxt.status["operationalStatus"] == "error"
    assert nxt.status["errorMessage"] == "BMC unreachable"
    assert nxt.status["errorType"] == hsm.INSPECTION_ERROR
    assert nxt.status["lastUpdated"] == _iso(NOW)
    assert "issued" not in nxt.status
    assert nxt.delay == 8.0
    assert nxt.settled is False
    # the input is not changed
    assert host.status["errorCount"] == 2 and host.status["issued"] == "inspect"


def test_advance_waiting_for_a_dependency_counts_no_error_and_is_forgotten_after():
    """Ironic down is not the host's failure: three of those must not fail its cluster."""
    status = _status(INSPECTING, errorCount=1, issued="inspect")
    host = _host(INSPECTING, status=status)
    op = hsm.plan(host)
    nxt = _advance(host, op, Outcome(waiting="waiting for Ironic: connection refused"))
    assert nxt.state == INSPECTING and nxt.delay == hsm.WAITING_DELAY
    assert nxt.status["errorCount"] == 1 and nxt.status["issued"] == "inspect"
    assert nxt.status["waiting"] == "waiting for Ironic: connection refused"
    again = _host(INSPECTING, status=nxt.status)
    after = _advance(again, op, Outcome(issued="inspect"))
    assert "waiting" not in after.status
    assert "waiting" in hsm.INTERNAL_STATUS  # the API does not show conductor bookkeeping


@pytest.mark.parametrize("before, delay", [(0, 2.0), (1, 4.0), (4, 32.0), (7, 256.0), (8, 300.0),
                                           (20, 300.0)])
def test_advance_error_backoff_is_two_to_the_count_capped(before, delay):
    host = _host(REGISTERING, status=_status(REGISTERING, errorCount=before))
    nxt = _advance(host, hsm.plan(host), Outcome(error="boom"))
    assert nxt.status["errorCount"] == before + 1
    assert nxt.delay == delay


def test_advance_error_backoff_after_very_many_errors_stays_capped():
    host = _host(REGISTERING, status=_status(REGISTERING, errorCount=1023))
    nxt = _advance(host, hsm.plan(host), Outcome(error="still unreachable"))
    assert nxt.status["errorCount"] == 1024
    assert nxt.delay == MAX_BACKOFF


@pytest.mark.parametrize("state, error_type", [
    (REGISTERING, hsm.REGISTRATION_ERROR),
    (INSPECTING, hsm.INSPECTION_ERROR),
    (PREPARING, hsm.PREPARATION_ERROR),
    (AVAILABLE, hsm.POWER_ERROR),
    (PROVISIONING, hsm.PROVISIONING_ERROR),
    (DEPROVISIONING, hsm.PROVISIONING_ERROR),
])
def test_advance_error_type_comes_from_the_operation(state, error_type):
    host = _host(state, _spec(image=IMAGE) if state == PROVISIONING else _spec())
    nxt = _advance(host, hsm.plan(host), Outcome(error="failed"))
    assert nxt.status["errorType"] == error_type


def test_advance_error_of_an_operation_without_error_type_sets_none():
    host = _host(DELETING)
    nxt = _advance(host, hsm.plan(host), Outcome(error="ironic said no"))
    assert nxt.state == DELETING
    assert nxt.status["operationalStatus"] == "error"
    assert "errorType" not in nxt.status


def test_advance_in_progress_keeps_state_and_waits_busy():
    host = _host(PROVISIONING, _spec(image=IMAGE))
    nxt = _advance(host, hsm.plan(host), Outcome(issued="deploy"))
    assert nxt.state == PROVISIONING
    assert nxt.status["provisioning"]["state"] == PROVISIONING
    assert nxt.status["issued"] == "deploy"
    assert nxt.delay == BUSY
    assert nxt.settled is False


@pytest.mark.parametrize("retry_after", [7.0, 0.0])
def test_advance_in_progress_uses_retry_after(retry_after):
    host = _host(PROVISIONING, _spec(image=IMAGE))
    nxt = _advance(host, hsm.plan(host), Outcome(retry_after=retry_after))
    assert nxt.state == PROVISIONING
    assert nxt.delay == retry_after


def test_advance_done_clears_errors_and_moves_on():
    status = _status(INSPECTING, errorCount=3, operationalStatus="error",
                     errorMessage="BMC unreachable", errorType=hsm.INSPECTION_ERROR, issued="inspect")
    host = _host(INSPECTING, status=status)
    nxt = _advance(host, hsm.plan(host), Outcome(done=True))
    assert nxt.state == PREPARING
    assert nxt.status["provisioning"]["state"] == PREPARING
    assert nxt.status["operationalStatus"] == "OK"
    assert nxt.status["errorCount"] == 0
    assert nxt.status["errorMessage"] == ""
    assert "errorType" not in nxt.status
    assert "issued" not in nxt.status
    assert nxt.delay == 0.0
    assert nxt.settled is False


def test_advance_done_provision_records_the_image():
    host = _host(PROVISIONING, _spec(image=IMAGE))
    nxt = _advance(host, hsm.plan(host), Outcome(done=True))
    assert nxt.state == PROVISIONED
    assert nxt.status["provisioning"]["image"] == IMAGE
    assert nxt.status["operationHistory"]["provision"]["end"] == _iso(NOW)


def test_advance_done_deprovision_forgets_the_image():
    status = _status(DEPROVISIONING)
    status["provisioning"]["image"] = copy.deepcopy(IMAGE)
    host = _host(DEPROVISIONING, status=status)
    nxt = _advance(host, hsm.plan(host), Outcome(done=True))
    assert nxt.state == AVAILABLE
    assert "image" not in nxt.status["provisioning"]
    assert host.status["provisioning"]["image"] == IMAGE  # input unchanged


def test_advance_done_register_records_registered_version():
    host = _host(REGISTERING, status=_status(REGISTERING, registeredVersion=1), bmc_version=4)
    nxt = _advance(host, hsm.plan(host), Outcome(done=True))
    assert nxt.state == INSPECTING
    assert nxt.status["registeredVersion"] == 4


def test_advance_done_without_on_done_is_settled_and_resyncs():
    host = _host(AVAILABLE, _spec(online=True))
    op = hsm.plan(host)
    assert op.on_done is None
    nxt = _advance(host, op, Outcome(done=True, observed={"poweredOn": True}))
    assert nxt.state == AVAILABLE
    assert nxt.settled is True
    assert nxt.delay == RESYNC
    assert nxt.status["poweredOn"] is True


def test_advance_done_delete_is_gone():
    host = _host(DELETING)
    nxt = _advance(host, hsm.plan(host), Outcome(done=True))
    assert nxt.state == GONE


def test_advance_observed_values_land_in_status():
    host = _host(REGISTERING)
    nxt = _advance(host, hsm.plan(host), Outcome(issued="enroll",
                                                 observed={"ID": "node-uuid-1", "poweredOn": True}))
    assert nxt.status["provisioning"]["ID"] == "node-uuid-1"
    assert nxt.status["poweredOn"] is True
    assert "ID" not in nxt.status
    # also recorded when the operation fails
    nxt = _advance(host, hsm.plan(host), Outcome(error="x", observed={"ID": "node-uuid-2"}))
    assert nxt.status["provisioning"]["ID"] == "node-uuid-2"


# --- transition() -------------------------------------------------------------------------------------

_INVALID = [(a, b) for a in hsm.STATES for b in (*hsm.STATES, GONE) if b not in hsm.TRANSITIONS[a]]
_VALID = [(a, b) for a in hsm.STATES for b in sorted(hsm.TRANSITIONS[a]) if b != GONE]


def test_the_transition_table_is_not_trivial():
    assert len(_INVALID) > 30 and len(_VALID) > 10
    assert (REGISTERING, PROVISIONED) in _INVALID and (PROVISIONED, AVAILABLE) in _INVALID


@pytest.mark.parametrize("old, new", _INVALID)
def test_transition_rejects_changes_not_in_the_table(old, new):
    host = _host(old)
    with pytest.raises(InvalidTransition, match=f"from {old!r} to {new!r}"):
        hsm.transition(host, new, NOW)
    assert host.status["provisioning"]["state"] == old


@pytest.mark.parametrize("old, new", _VALID)
def test_transition_allows_changes_in_the_table(old, new):
    nxt = hsm.transition(_host(old), new, NOW)
    assert nxt.state == new
    assert nxt.status["provisioning"]["state"] == new
    assert nxt.delay == 0.0


def test_advance_cannot_leave_through_an_invalid_transition():
    host = _host(REGISTERING)
    bogus = Operation("register", hsm.REGISTRATION_ERROR, AVAILABLE, {"bmc_version": 1})
    with pytest.raises(InvalidTransition):
        _advance(host, bogus, Outcome(done=True))


def test_transition_maintains_operation_history():
    t1, t2 = NOW, NOW + 60
    host = _host(AVAILABLE, _spec(image=IMAGE))
    nxt = hsm.transition(host, PROVISIONING, t1)
    assert nxt.status["operationHistory"]["provision"] == {"start": _iso(t1), "end": None}
    host = _host(PROVISIONING, _spec(), nxt.status)
    nxt = hsm.transition(host, DEPROVISIONING, t2)
    history = nxt.status["operationHistory"]
    assert history["provision"] == {"start": _iso(t1), "end": _iso(t2)}
    assert history["deprovision"] == {"start": _iso(t2), "end": None}
    assert nxt.status["lastUpdated"] == _iso(t2)


def test_transition_to_registering_rediscovers_and_drops_issued():
    status = _status(AVAILABLE, operationalStatus="OK", issued="power on")
    nxt = hsm.transition(_host(AVAILABLE, status=status, bmc_version=2), REGISTERING, NOW)
    assert nxt.state == REGISTERING
    assert nxt.status["operationalStatus"] == "discovered"
    assert "issued" not in nxt.status
    assert nxt.status["operationHistory"]["register"] == {"start": _iso(NOW), "end": None}
    assert status["issued"] == "power on"  # input unchanged


# --- a whole life -------------------------------------------------------------------------------------


def test_happy_path_from_registering_to_gone():
    spec = _spec(online=True)
    status = hsm.initial_status(NOW)
    state, deleting = REGISTERING, False
    now = NOW

    def step(outcome: Outcome | None = None, *, expect_step, expect_state: str):
        nonlocal status, state, now
        now += 10
        host = HostView("node-0", copy.deepcopy(spec), state, status, deleting, bmc_version=1)
        planned = hsm.plan(host)
        if isinstance(expect_step, str):
            assert isinstance(planned, Operation) and planned.name == expect_step, planned
            nxt = _advance(host, planned, outcome, now)
        else:
            assert planned == expect_step
            nxt = hsm.transition(host, planned.to, now)
        assert nxt.state == expect_state
        if nxt.state != GONE:
            assert nxt.status["provisioning"]["state"] == expect_state
        status, state = nxt.status, nxt.state
        return nxt

    nxt = step(Outcome(issued="enroll", observed={"ID": "node-1"}), expect_step="register",
               expect_state=REGISTERING)
    assert status["issued"] == "enroll" and nxt.delay == BUSY
    step(Outcome(done=True), expect_step="register", expect_state=INSPECTING)
    assert status["registeredVersion"] == 1 and status["provisioning"]["ID"] == "node-1"
    step(Outcome(done=True), expect_step="inspect", expect_state=PREPARING)
    step(Outcome(error="clean failed"), expect_step="prepare", expect_state=PREPARING)
    assert status["operationalStatus"] == "error" and status["errorCount"] == 1
    step(Outcome(done=True), expect_step="prepare", expect_state=AVAILABLE)
    assert status["operationalStatus"] == "OK" and status["errorCount"] == 0
    nxt = step(Outcome(done=True, observed={"poweredOn": True}), expect_step="power",
               expect_state=AVAILABLE)
    assert nxt.settled and status["poweredOn"] is True

    spec["image"] = copy.deepcopy(IMAGE)
    step(expect_step=Transition(PROVISIONING), expect_state=PROVISIONING)
    step(Outcome(issued="deploy"), expect_step="provision", expect_state=PROVISIONING)
    step(Outcome(done=True), expect_step="provision", expect_state=PROVISIONED)
    assert status["provisioning"]["image"] == IMAGE
    nxt = step(Outcome(done=True), expect_step="power", expect_state=PROVISIONED)
    assert nxt.settled

    del spec["image"]
    step(expect_step=Transition(DEPROVISIONING), expect_state=DEPROVISIONING)
    step(Outcome(done=True), expect_step="deprovision", expect_state=AVAILABLE)
    assert "image" not in status["provisioning"]

    deleting = True
    step(expect_step=Transition(DELETING), expect_state=DELETING)
    step(Outcome(done=True), expect_step="delete", expect_state=GONE)

    history = status["operationHistory"]
    assert set(history) == {"register", "inspect", "provision", "deprovision"}
    assert all(entry["end"] is not None for entry in history.values())
