"""Claiming hosts for clusters (teapot.db.clusters) on a real SQLite file made by the migrations."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import event, select, update

from teapot.db import clusters as cdb
from teapot.db.engine import make_engine, make_sessionmaker
from teapot.db.models import Host, NodeGroup
from teapot.resources import host as hsm
from tests.unit.rows import host_row

SMALL = {"size": "small"}
LARGE = {"size": "large"}
CLUSTER_A = str(uuid.uuid4())
OTHER_CLUSTER = str(uuid.uuid4())

FREE_SMALL = ["small-0", "small-1", "small-2", "small-3"]
FREE_LARGE = ["large-0", "large-1"]
BUSY_SMALL = "small-provisioning"  # in state provisioning: never claimable
TAKEN_SMALL = "small-taken"  # already another cluster's: never claimable




def _row(name: str, **changes) -> Host:
    return host_row(name, **{"state": hsm.AVAILABLE, **changes})


def _insert(sm, name: str, **changes) -> None:
    with sm.begin() as session:
        session.add(_row(name, **changes))


@pytest.fixture
def pool(sm):
    """4 free small hosts, 2 free large ones, a small one provisioning and a small one taken."""
    for name in FREE_SMALL:
        _insert(sm, name, labels=dict(SMALL), next_attempt_at=1e12)
    for name in FREE_LARGE:
        _insert(sm, name, labels=dict(LARGE))
    _insert(sm, BUSY_SMALL, labels=dict(SMALL), state=hsm.PROVISIONING)
    _insert(sm, TAKEN_SMALL, labels=dict(SMALL), cluster_uuid=OTHER_CLUSTER,
            nodegroup="default-worker")
    return sm


def _owners(sm) -> dict[str, tuple[str | None, str | None]]:
    """host name → (cluster_uuid, nodegroup), read fresh from the table."""
    with sm() as session:
        return {h.name: (h.cluster_uuid, h.nodegroup) for h in session.scalars(select(Host))}


def _held_by(sm, cluster_uuid: str) -> list[str]:
    return sorted(n for n, (c, _) in _owners(sm).items() if c == cluster_uuid)


def _untouched(owners) -> None:
    assert owners[BUSY_SMALL] == (None, None)
    assert owners[TAKEN_SMALL] == (OTHER_CLUSTER, "default-worker")
    for name in FREE_LARGE:
        assert owners[name] == (None, None)


def _wants(masters: int = 1, workers: int = 2, labels=SMALL) -> dict:
    return {"default-master": (masters, "small", cdb.Selector(dict(labels))),
            "default-worker": (workers, "small", cdb.Selector(dict(labels)))}


# --- claiming ------------------------------------------------------------------------------------


def test_claim_takes_exactly_the_hosts_asked_for(pool):
    cdb.claim(pool, CLUSTER_A, _wants(1, 2))
    owners = _owners(pool)
    held = _held_by(pool, CLUSTER_A)
    assert len(held) == 3
    assert set(held) <= set(FREE_SMALL)
    groups = sorted(owners[name][1] for name in held)
    assert groups == ["default-master", "default-worker", "default-worker"]
    _untouched(owners)
    (left,) = set(FREE_SMALL) - set(held)
    assert owners[left] == (None, None)
    with pool() as session:
        for h in session.scalars(select(Host).where(Host.name.in_(held))):
            assert h.next_attempt_at == 0.0  # the host is looked at at once
        assert session.scalars(select(Host).where(Host.name == left)).one().next_attempt_at == 1e12


def test_claim_of_another_class(pool):
    cdb.claim(pool, CLUSTER_A, {"big": (2, "large", cdb.Selector(dict(LARGE)))})
    assert _held_by(pool, CLUSTER_A) == sorted(FREE_LARGE)
    assert all(_owners(pool)[n] == (None, None) for n in FREE_SMALL)


def test_two_claims_never_share_a_host(pool):
    second = str(uuid.uuid4())
    cdb.claim(pool, CLUSTER_A, _wants(1, 1))
    cdb.claim(pool, second, _wants(1, 1))
    assert len(_held_by(pool, CLUSTER_A)) == 2
    assert len(_held_by(pool, second)) == 2
    assert not set(_held_by(pool, CLUSTER_A)) & set(_held_by(pool, second))
    with pytest.raises(cdb.ClaimShortage):
        cdb.claim(pool, str(uuid.uuid4()), {"default-worker": (1, "small", cdb.Selector(dict(SMALL)))})


def test_a_shortage_in_a_later_group_claims_nothing_at_all(pool):
    # The masters could be satisfied (and are claimed first in the transaction); the workers cannot.
    with pytest.raises(cdb.ClaimShortage) as caught:
        cdb.claim(pool, CLUSTER_A, _wants(1, 4))
    message = str(caught.value)
    assert "default-worker" in message
    assert "small" in message
    assert "needs 4" in message
    assert _held_by(pool, CLUSTER_A) == []
    owners = _owners(pool)
    assert all(owners[n] == (None, None) for n in FREE_SMALL)
    _untouched(owners)


def test_a_shortage_in_the_first_group_names_it(pool):
    wants = {"big-workers": (3, "large", cdb.Selector(dict(LARGE))),
             "default-worker": (1, "small", cdb.Selector(dict(SMALL)))}
    with pytest.raises(cdb.ClaimShortage) as caught:
        cdb.claim(pool, CLUSTER_A, wants)
    message = str(caught.value)
    assert "big-workers" in message
    assert "large" in message
    assert "needs 3" in message
    assert _held_by(pool, CLUSTER_A) == []


def test_deleting_hosts_are_never_claimed(pool):
    with pool.begin() as session:
        session.execute(update(Host).where(Host.name.in_(FREE_SMALL[:2])).values(deleting=True))
    with pytest.raises(cdb.ClaimShortage):
        cdb.claim(pool, CLUSTER_A, _wants(1, 2))
    cdb.claim(pool, CLUSTER_A, _wants(1, 1))
    assert _held_by(pool, CLUSTER_A) == sorted(FREE_SMALL[2:])


# --- releasing -----------------------------------------------------------------------------------


def test_release_frees_only_the_named_hosts_of_that_cluster(pool):
    cdb.claim(pool, CLUSTER_A, _wants(1, 2))
    held = _held_by(pool, CLUSTER_A)
    freed, kept = held[0], held[1:]
    # TAKEN_SMALL is named too, but it is another cluster's.
    cdb.release(pool, CLUSTER_A, [freed, TAKEN_SMALL, FREE_LARGE[0]])
    owners = _owners(pool)
    assert owners[freed] == (None, None)
    assert _held_by(pool, CLUSTER_A) == kept
    assert all(owners[n][1] is not None for n in kept)
    _untouched(owners)


def test_released_hosts_can_be_claimed_again(pool):
    cdb.claim(pool, CLUSTER_A, _wants(2, 2))
    cdb.release(pool, CLUSTER_A, _held_by(pool, CLUSTER_A))
    assert _held_by(pool, CLUSTER_A) == []
    other = str(uuid.uuid4())
    cdb.claim(pool, other, _wants(2, 2))
    assert _held_by(pool, other) == FREE_SMALL


# --- label matching in SQL -----------------------------------------------------------------------


def _free(sm, labels, traits=()) -> list[str]:
    with sm() as session:
        ids = list(session.scalars(cdb.free_hosts_query(cdb.Selector(labels, tuple(traits)))))
        return sorted(session.scalars(select(Host.name).where(Host.id.in_(ids))))


def test_labels_match_in_sql(pool):
    _insert(pool, "gpu-0", labels={"size": "small", "gpu": "yes"})
    assert _free(pool, SMALL) == sorted(FREE_SMALL + ["gpu-0"])
    assert _free(pool, {"size": "small", "gpu": "yes"}) == ["gpu-0"]
    assert _free(pool, {"gpu": "yes"}) == ["gpu-0"]
    assert _free(pool, {"gpu": "no"}) == []
    assert _free(pool, {"size": "small", "gpu": "no"}) == []
    assert _free(pool, LARGE) == FREE_LARGE
    assert _free(pool, {"size": "medium"}) == []


def test_claim_honours_every_label(pool):
    _insert(pool, "gpu-0", labels={"size": "small", "gpu": "yes"})
    with pytest.raises(cdb.ClaimShortage):
        cdb.claim(pool, CLUSTER_A, {"gpu": (1, "gpu-no", cdb.Selector({"gpu": "no"}))})
    cdb.claim(pool, CLUSTER_A, {"gpu": (1, "gpu-yes", cdb.Selector({"size": "small", "gpu": "yes"}))})
    assert _held_by(pool, CLUSTER_A) == ["gpu-0"]


def test_labels_with_dots_and_slashes(pool):
    key = "node.kubernetes.io/instance-type"
    _insert(pool, "typed-0", labels={key: "m5.large", "size": "small"})
    assert _free(pool, {key: "m5.large"}) == ["typed-0"]
    assert _free(pool, {key: "m5"}) == []


def test_traits_match_whole_names_in_sql(pool):
    _insert(pool, "gpu-0", labels=dict(SMALL), traits=["CUSTOM_GPU", "HW_CPU_X86_AVX2"])
    _insert(pool, "gpu-1", labels=dict(SMALL), traits=["CUSTOM_GPU_A100"])
    _insert(pool, "avx-0", labels=dict(LARGE), traits=["HW_CPU_X86_AVX2"])
    assert _free(pool, {}, ["CUSTOM_GPU"]) == ["gpu-0"]  # not CUSTOM_GPU_A100
    assert _free(pool, {}, ["CUSTOM_GPU_A100"]) == ["gpu-1"]
    assert _free(pool, {}, ["HW_CPU_X86_AVX2"]) == ["avx-0", "gpu-0"]
    assert _free(pool, {}, ["CUSTOM_GPU", "HW_CPU_X86_AVX2"]) == ["gpu-0"]
    assert _free(pool, LARGE, ["HW_CPU_X86_AVX2"]) == ["avx-0"]
    assert _free(pool, LARGE, ["CUSTOM_GPU"]) == []
    assert _free(pool, {}, ["CUSTOM_GPU%"]) == []  # no pattern matching
    cdb.claim(pool, CLUSTER_A, {"gpu": (1, "gpu", cdb.Selector({}, ("CUSTOM_GPU",)))})
    assert _held_by(pool, CLUSTER_A) == ["gpu-0"]
    with pytest.raises(cdb.ClaimShortage, match="host class gpu"):
        cdb.claim(pool, OTHER_CLUSTER, {"gpu": (1, "gpu", cdb.Selector({}, ("CUSTOM_GPU",)))})


def test_count_matching(pool):
    _insert(pool, "small-deleting", labels=dict(SMALL), deleting=True)
    with pool() as session:
        # All small hosts that are not being deleted, claimed or busy or not.
        assert cdb.count_matching(session, cdb.Selector(SMALL)) == 6
        assert cdb.count_matching(session, cdb.Selector(SMALL), free_only=True) == 4
        assert cdb.count_matching(session, cdb.Selector(LARGE)) == 2
        assert cdb.count_matching(session, cdb.Selector({"size": "medium"})) == 0
    cdb.claim(pool, CLUSTER_A, _wants(1, 2))
    with pool() as session:
        assert cdb.count_matching(session, cdb.Selector(SMALL)) == 6
        assert cdb.count_matching(session, cdb.Selector(SMALL), free_only=True) == 1


# --- racing claims -------------------------------------------------------------------------------


def _race(db_url: str, threads: int = 10, per_claim: int = 2):
    barrier = threading.Barrier(threads)
    outcomes: dict[str, object] = {}
    lock = threading.Lock()

    def contender(cluster_uuid: str) -> None:
        engine = make_engine(db_url)
        sm = make_sessionmaker(engine)
        try:
            barrier.wait(timeout=30)
            try:
                cdb.claim(sm, cluster_uuid, {"default-worker": (per_claim, "small", cdb.Selector(dict(SMALL)))})
                outcome: object = "ok"
            except Exception as e:  # kept, to assert on below
                outcome = e
            with lock:
                outcomes[cluster_uuid] = outcome
        finally:
            engine.dispose()

    clusters = [str(uuid.uuid4()) for _ in range(threads)]
    workers = [threading.Thread(target=contender, args=(c,)) for c in clusters]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers)
    return clusters, outcomes


def test_racing_claims_never_give_a_host_twice(pool, db_url):
    for _ in range(3):
        clusters, outcomes = _race(db_url)
        assert len(outcomes) == len(clusters)
        winners = [c for c, o in outcomes.items() if o == "ok"]
        losers = [o for o in outcomes.values() if o != "ok"]
        assert len(winners) == 2, outcomes
        assert all(isinstance(o, cdb.ClaimShortage) for o in losers), losers

        owners = _owners(pool)
        _untouched(owners)
        claimed = {n: c for n, (c, _) in owners.items() if c in clusters}
        assert sorted(claimed) == FREE_SMALL  # every free host went to one cluster, once
        for c in winners:
            assert len([n for n, owner in claimed.items() if owner == c]) == 2
        assert set(claimed.values()) == set(winners)

        # reset for the next round
        for c in winners:
            cdb.release(pool, c, [n for n, owner in claimed.items() if owner == c])
        assert all(_owners(pool)[n] == (None, None) for n in FREE_SMALL)


# --- node groups of many clusters ---------------------------------------------------------------


def _nodegroup(sm, cluster_uuid: str, name: str, role: str = "worker", count: int = 1) -> None:
    with sm.begin() as session:
        session.add(NodeGroup(uuid=str(uuid.uuid4()), name=name, cluster_uuid=cluster_uuid,
                              project_id="p", role=role, flavor_id="small", image_id=None,
                              node_count=count, min_node_count=0, max_node_count=None,
                              is_default=True, labels={}, status="CREATE_IN_PROGRESS",
                              status_reason=None, nodes_to_remove=[], created_at=time.time(),
                              updated_at=None))


def test_nodegroups_of_many_clusters_in_one_query(sm):
    one, two, three, empty = (str(uuid.uuid4()) for _ in range(4))
    _nodegroup(sm, one, "default-master", "master")
    _nodegroup(sm, two, "default-master", "master")
    _nodegroup(sm, one, "default-worker", count=3)
    _nodegroup(sm, three, "default-worker", count=2)
    _nodegroup(sm, two, "default-worker", count=5)
    _nodegroup(sm, two, "gpu", count=1)

    statements: list[str] = []
    engine = sm.kw["bind"]

    def count(_conn, _cursor, statement, *_):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with sm() as session:
            groups = cdb.nodegroups(session, [one, two, empty])
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert set(groups) == {one, two, empty}
    assert [g.name for g in groups[one]] == ["default-master", "default-worker"]
    assert [(g.name, g.node_count) for g in groups[two]] == [
        ("default-master", 1), ("default-worker", 5), ("gpu", 1)]
    assert groups[empty] == []
    assert all(g.cluster_uuid == one for g in groups[one])


def test_nodegroups_of_no_clusters(sm):
    with sm() as session:
        assert cdb.nodegroups(session, []) == {}


def test_scarce_node_groups_choose_first_and_plain_hosts_go_to_general_classes(pool):
    # small-0 sorts first by name but is the only GPU host: the general master must not take it.
    with pool.begin() as session:
        session.execute(update(Host).where(Host.name == "small-0").values(traits=["CUSTOM_GPU"]))
    cdb.claim(pool, CLUSTER_A, {
        "default-master": (1, "small", cdb.Selector(dict(SMALL))),
        "default-worker": (1, "gpu", cdb.Selector({}, ("CUSTOM_GPU",))),
    })
    owners = _owners(pool)
    assert owners["small-0"] == (CLUSTER_A, "default-worker")
    assert owners["small-1"] == (CLUSTER_A, "default-master")
