"""Host rows, leases and scheduling (teapot.db.hosts) on a real SQLite file made by the migrations."""

from __future__ import annotations

import threading
import time

import pytest

from teapot.db import hosts as host_db
from teapot.db import leases
from teapot.db.engine import make_engine, make_sessionmaker
from teapot.db.models import Host
from teapot.resources import host as hsm
from teapot.resources.errors import ValidationError
from tests.unit.rows import FERNET, host_row


def _row(name: str, **changes) -> Host:
    return host_row(name, **changes)


def _insert(sm, name: str, **changes) -> int:
    with sm.begin() as session:
        return host_db.create(session, _row(name, **changes)).id


def _load(sm, host_id: int) -> Host:
    with sm() as session:
        return session.get(Host, host_id)


# --- creating hosts -----------------------------------------------------------------------------------


def test_created_host_reads_back(sm):
    host_id = _insert(sm, "node-0")
    with sm() as session:
        row = host_db.get(session, "node-0")
        assert row.id == host_id
        assert host_db.get(session, row.uuid).name == "node-0"
        assert row.state == hsm.REGISTERING
        assert row.status["provisioning"]["state"] == hsm.REGISTERING
        assert FERNET.decrypt(row.bmc_password) == b"s3cret"
        with pytest.raises(host_db.NotFound):
            host_db.get(session, "node-1")


def test_two_hosts_with_the_same_name_is_a_validation_error(sm):
    _insert(sm, "node-0")
    with pytest.raises(ValidationError) as err, sm.begin() as session:
        host_db.create(session, _row("node-0"))
    assert err.value.field == "name"
    assert "already exists" in err.value.message
    with sm() as session:
        assert [h.name for h in host_db.list_all(session)] == ["node-0"]


# --- leases -------------------------------------------------------------------------------------------


def test_lease_is_exclusive_until_released(sm):
    host_id = _insert(sm, "node-0")
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 30)
    row = _load(sm, host_id)
    assert row.lease_owner == "conductor-a"
    assert row.lease_expires_at > time.time() + 25
    assert not host_db.acquire_lease(sm, host_id, "conductor-b", 30)
    assert _load(sm, host_id).lease_owner == "conductor-a"
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 30)  # the holder renews it

    host_db.release_lease(sm, host_id, "conductor-b")  # not the holder: nothing happens
    assert _load(sm, host_id).lease_owner == "conductor-a"
    host_db.release_lease(sm, host_id, "conductor-a")
    row = _load(sm, host_id)
    assert row.lease_owner is None and row.lease_expires_at == 0.0
    assert host_db.acquire_lease(sm, host_id, "conductor-b", 30)


def test_expired_lease_can_be_taken_by_another(sm):
    host_id = _insert(sm, "node-0")
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 0.3)
    assert not host_db.acquire_lease(sm, host_id, "conductor-b", 30)
    time.sleep(0.4)
    assert host_db.acquire_lease(sm, host_id, "conductor-b", 30)
    assert _load(sm, host_id).lease_owner == "conductor-b"
    assert not host_db.acquire_lease(sm, host_id, "conductor-a", 30)


def test_lease_of_a_missing_host_is_not_acquired(sm):
    assert not host_db.acquire_lease(sm, 12345, "conductor-a", 30)


def _race(makers, host_id: int, owners: list[str]) -> dict[str, bool]:
    """Every owner tries for the lease at the same moment, each through its own engine."""
    barrier = threading.Barrier(len(owners))
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def attempt(maker, owner: str) -> None:
        try:
            barrier.wait(timeout=10)
            results[owner] = host_db.acquire_lease(maker, host_id, owner, 30)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=attempt, args=(m, o)) for m, o in zip(makers, owners, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(results) == len(owners)
    return results


def test_only_one_of_many_racing_conductors_gets_the_lease(db_url, sm):
    host_id = _insert(sm, "node-0")
    engines = [make_engine(db_url) for _ in range(8)]
    makers = [make_sessionmaker(e) for e in engines]
    try:
        for round_ in range(3):
            results = _race(makers, host_id, [f"conductor-{round_}-{i}" for i in range(8)])
            winners = [owner for owner, won in results.items() if won]
            assert len(winners) == 1, results
            assert _load(sm, host_id).lease_owner == winners[0]
            host_db.release_lease(sm, host_id, winners[0])
    finally:
        for engine in engines:
            engine.dispose()


# --- save_status --------------------------------------------------------------------------------------


def _new_status(state: str) -> dict:
    status = hsm.initial_status(time.time())
    status["provisioning"]["state"] = state
    status["operationalStatus"] = "OK"
    return status


def test_save_status_needs_the_lease(sm):
    host_id = _insert(sm, "node-0")
    before = _load(sm, host_id)
    status = _new_status(hsm.INSPECTING)
    # nobody holds the lease
    assert not host_db.save_status(sm, host_id, "conductor-a", 1, hsm.INSPECTING, status, 123.0, 30)
    # someone else holds it
    assert host_db.acquire_lease(sm, host_id, "conductor-b", 30)
    assert not host_db.save_status(sm, host_id, "conductor-a", 1, hsm.INSPECTING, status, 123.0, 30)
    row = _load(sm, host_id)
    assert row.state == before.state == hsm.REGISTERING
    assert row.status == before.status
    assert row.next_attempt_at == 0.0
    # and a missing host is refused too
    assert not host_db.save_status(sm, 999, "conductor-b", 1, hsm.INSPECTING, status, 1.0, 30)


def test_save_status_by_the_holder_records_it(sm):
    host_id = _insert(sm, "node-0")
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 1)
    status = _new_status(hsm.INSPECTING)
    next_at = time.time() + 60
    assert host_db.save_status(sm, host_id, "conductor-a", 1, hsm.INSPECTING, status, next_at, 30)
    row = _load(sm, host_id)
    assert row.state == hsm.INSPECTING
    assert row.status == status
    assert row.next_attempt_at == pytest.approx(next_at)
    assert row.lease_owner == "conductor-a"
    assert row.lease_expires_at > time.time() + 25  # the lease is renewed


def test_save_status_after_a_spec_change_makes_the_host_due_at_once(sm):
    host_id = _insert(sm, "node-0")
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 30)
    with sm.begin() as session:  # the API changes the spec meanwhile
        session.get(Host, host_id).generation += 1
    status = _new_status(hsm.INSPECTING)
    assert host_db.save_status(sm, host_id, "conductor-a", 1, hsm.INSPECTING, status,
                               time.time() + 300, 30)
    row = _load(sm, host_id)
    assert row.next_attempt_at == 0.0
    assert row.state == hsm.INSPECTING  # the result is still recorded


# --- due ----------------------------------------------------------------------------------------------


def test_due_skips_live_leases_and_future_attempts(sm):
    now = time.time()
    free = _insert(sm, "free", next_attempt_at=now - 5)
    leased = _insert(sm, "leased", lease_owner="conductor-a", lease_expires_at=now + 60)
    later = _insert(sm, "later", next_attempt_at=now + 60)
    expired = _insert(sm, "expired", next_attempt_at=now - 10, lease_owner="conductor-a",
                      lease_expires_at=now - 1)
    new = _insert(sm, "new")
    due = host_db.due(sm, now, 10)
    assert set(due) == {free, expired, new}
    assert leased not in due and later not in due
    assert due == [new, expired, free]  # oldest next_attempt_at first
    assert host_db.due(sm, now, 2) == [new, expired]
    assert set(host_db.due(sm, now + 120, 10)) == {free, expired, new, later, leased}


def test_due_follows_acquire_and_release(sm):
    host_id = _insert(sm, "node-0")
    assert host_db.due(sm, time.time(), 10) == [host_id]
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 30)
    assert host_db.due(sm, time.time(), 10) == []
    host_db.release_lease(sm, host_id, "conductor-a")
    assert host_db.due(sm, time.time(), 10) == [host_id]


def test_remove_needs_the_lease(sm):
    host_id = _insert(sm, "node-0")
    host_db.remove(sm, host_id, "conductor-a")
    assert _load(sm, host_id) is not None
    assert host_db.acquire_lease(sm, host_id, "conductor-a", 30)
    host_db.remove(sm, host_id, "conductor-a")
    assert _load(sm, host_id) is None


class _NetworkReconciler:
    """A reconciler of networks for the loop's tests: `reconcile` is the given function."""

    kind = "network"

    def __init__(self, sm, reconcile):
        from teapot.db.models import Network

        self.model, self.sm, self.reconcile = Network, sm, reconcile

    def due(self, now, limit):
        return leases.due(self.sm, self.model, now, limit)

    def refresh(self):
        pass


def test_a_reconcile_that_raises_is_retried_later_each_time_later(sm):
    """A bug in a reconciler never turns into a hot loop: the object is looked at again after a
    delay that doubles with each failure in a row, and a success forgets the failures."""
    import time as clock

    from teapot.conductor.loop import Loop
    from teapot.db.models import Network

    with sm.begin() as session:
        session.add(Network(uuid="n-1", name="n", project_id="p", vlan_id=100, status="creating",
                            created_at=0.0))
    with sm() as session:
        net_id = session.query(Network.id).scalar()

    calls = []

    def a_bug(object_id):
        calls.append(object_id)
        raise ValueError("a bug")

    broken = _NetworkReconciler(sm, a_bug)
    loop = Loop([broken], workers=1, poll_interval=0.01)
    try:
        delays = []
        for _ in range(3):
            loop._guarded(broken, net_id)
            with sm() as session:
                delays.append(session.get(Network, net_id).next_attempt_at - clock.time())
            assert loop.tick() == 0  # not due again at once
        assert [round(d) for d in delays] == [2, 4, 8] and len(calls) == 3
    finally:
        loop.pool.shutdown()


def test_a_reconcile_that_meets_a_dependency_down_says_so_and_comes_back_soon(sm):
    """A dependency down is no bug: the object's status reason names it, no traceback is
    logged, and the wait stays short (the dependency's return is not Teapot's to wait for)."""
    import time as clock

    from keystoneauth1 import exceptions as ksa_exc

    from teapot import dependencies
    from teapot.conductor.loop import MAX_DEPENDENCY_BACKOFF, Loop
    from teapot.db.models import Network

    dependencies.name("http://127.0.0.1:6385/", "Ironic")
    with sm.begin() as session:
        session.add(Network(uuid="n-2", name="n", project_id="p", vlan_id=101, status="creating",
                            created_at=0.0))
    with sm() as session:
        net_id = session.query(Network.id).scalar()

    def ironic_refuses(object_id):
        raise ksa_exc.ConnectFailure(
            "Unable to establish connection to http://127.0.0.1:6385/v1/nodes: "
            "[Errno 111] Connection refused")

    reconciler = _NetworkReconciler(sm, ironic_refuses)
    loop = Loop([reconciler], workers=1, poll_interval=0.01)
    try:
        delays = []
        for _ in range(6):
            loop._guarded(reconciler, net_id)
            with sm() as session:
                row = session.get(Network, net_id)
                delays.append(row.next_attempt_at - clock.time())
        assert row.status_reason == "waiting for Ironic: connection refused"
        assert row.status == "creating"
        assert [round(d) for d in delays] == [1, 2, 4, 8, 8, 8]
        assert max(delays) <= MAX_DEPENDENCY_BACKOFF
    finally:
        loop.pool.shutdown()


def test_a_refresh_that_hangs_holds_back_its_own_kind_only_and_one_that_fails_holds_objects():
    """A frozen dependency (its refresh hangs) never stops the other kinds' reconciles; once it
    fails as a dependency down, the objects of that kind are held with the reason, not
    reconciled on what was observed before."""
    import threading

    from keystoneauth1 import exceptions as ksa_exc

    from teapot.conductor import loop as loop_module
    from teapot.conductor.loop import Loop

    release = threading.Event()
    seen: dict[str, list] = {"hanging": [], "other": [], "held": []}

    class Kind:
        def __init__(self, kind, refresh):
            self.kind, self._refresh = kind, refresh

        def due(self, now, limit):
            return [1]

        def refresh(self):
            self._refresh()

        def reconcile(self, object_id):
            seen[self.kind].append(object_id)

        def hold(self, object_id, down):
            seen["held"].append((self.kind, object_id, str(down)))

    def hangs_then_fails():
        release.wait(10)
        raise ksa_exc.ConnectFailure("Unable to establish connection to "
                                     "http://127.0.0.1:61385/v1/nodes: Connection refused")

    hanging, other = Kind("hanging", hangs_then_fails), Kind("other", lambda: None)
    loop = Loop([hanging, other], workers=4, poll_interval=0.01)
    wait_was, loop_module.REFRESH_WAIT = loop_module.REFRESH_WAIT, 0.05
    try:
        assert loop.tick() == 1  # the other kind, while the first one's refresh hangs
        loop.pool.shutdown(wait=True)
        loop.pool = type(loop.pool)(max_workers=4)
        assert seen["other"] == [1] and seen["hanging"] == []
        release.set()
        loop.refreshing["hanging"].exception(5)
        loop.inflight.clear()
        loop.tick()
        loop.pool.shutdown(wait=True)
        assert seen["hanging"] == []
        assert seen["held"] == [("hanging", 1, "waiting for the service at "
                                 "http://127.0.0.1:61385: connection refused")]
    finally:
        loop_module.REFRESH_WAIT = wait_was
        release.set()
        loop.refresher.shutdown(wait=False)
