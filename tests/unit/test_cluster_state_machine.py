"""The pure cluster state machine (teapot.resources.cluster): plan(), plan_capi(), kubeadm_roles()."""

from __future__ import annotations

import dataclasses

import pytest

from teapot.resources import cluster as csm
from teapot.resources.cluster import (
    ApplyObjects,
    CapiObserved,
    Claim,
    ClusterView,
    DeleteObjects,
    Deprovision,
    Gone,
    HostView,
    NodeGroupView,
    Provision,
    Release,
    Settle,
    Verify,
    Wait,
)


def host(name: str, nodegroup: str = "default-worker", state: str = "provisioned",
         has_image: bool = True, **changes) -> HostView:
    return HostView(name=name, uuid=changes.pop("uuid", f"uuid-{name}"), nodegroup=nodegroup,
                    state=state, has_image=has_image, **changes)


def claimed(name: str, nodegroup: str = "default-worker", **changes) -> HostView:
    """A host just claimed: available, not yet asked to be provisioned."""
    return host(name, nodegroup, state="available", has_image=False, **changes)


def ng(name: str, count: int, role: str = csm.ROLE_WORKER, remove: tuple[str, ...] = ()):
    return NodeGroupView(name=name, role=role, node_count=count, flavor_id="small",
                         nodes_to_remove=remove)


MASTERS = "default-master"
WORKERS = "default-worker"


def view(hosts=(), status=csm.CREATE_IN_PROGRESS, deleting=False, masters=1, workers=2,
         groups=None) -> ClusterView:
    if groups is None:
        groups = (ng(MASTERS, masters, csm.ROLE_MASTER), ng(WORKERS, workers))
    return ClusterView(status=status, deleting=deleting, nodegroups=tuple(groups),
                       hosts=tuple(hosts))


def full(state: str = "provisioned", has_image: bool = True, **changes) -> list[HostView]:
    """One master and two workers, all in the same state."""
    return [host("m0", MASTERS, state, has_image, **changes),
            host("w0", WORKERS, state, has_image, **changes),
            host("w1", WORKERS, state, has_image, **changes)]


# --- deleting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [csm.CREATE_COMPLETE, csm.DELETE_IN_PROGRESS,
                                    csm.CREATE_IN_PROGRESS, csm.UPDATE_FAILED])
def test_deleting_deprovisions_exactly_the_provisioned_hosts(status):
    hosts = [host("m0", MASTERS), host("w0", state="provisioning"),
             host("w1", state="deprovisioning", has_image=False),
             claimed("w2")]
    step = csm.plan(view(hosts, status=status, deleting=True))
    assert isinstance(step, Deprovision)
    assert sorted(step.hosts) == ["m0", "w0"]


def test_deleting_waits_for_hosts_still_being_cleaned():
    hosts = [host("m0", MASTERS, state="deprovisioning", has_image=False),
             host("w0", state="deprovisioning", has_image=False), claimed("w1")]
    step = csm.plan(view(hosts, deleting=True))
    assert isinstance(step, Wait)
    assert "m0" in step.reason and "w0" in step.reason
    assert "w1" not in step.reason


def test_deleting_releases_available_hosts():
    hosts = [claimed("m0", MASTERS), claimed("w0"), claimed("w1")]
    step = csm.plan(view(hosts, status=csm.DELETE_IN_PROGRESS, deleting=True))
    assert isinstance(step, Release)
    assert sorted(step.hosts) == ["m0", "w0", "w1"]


def test_deleting_with_no_hosts_is_gone():
    assert csm.plan(view([], status=csm.DELETE_IN_PROGRESS, deleting=True)) == Gone()


# --- failed and settled clusters ------------------------------------------------------------------


def test_create_failed_gives_its_provisioned_hosts_back():
    hosts = [host("m0", MASTERS), claimed("w0"), host("w1", state="provisioning")]
    step = csm.plan(view(hosts, status=csm.CREATE_FAILED))
    assert isinstance(step, Deprovision)
    assert sorted(step.hosts) == ["m0", "w1"]


def test_create_failed_releases_cleaned_hosts():
    step = csm.plan(view([claimed("m0", MASTERS), claimed("w0")], status=csm.CREATE_FAILED))
    assert isinstance(step, Release)
    assert sorted(step.hosts) == ["m0", "w0"]


def test_create_failed_without_hosts_waits():
    assert isinstance(csm.plan(view([], status=csm.CREATE_FAILED)), Wait)


@pytest.mark.parametrize("status", [csm.CREATE_COMPLETE, csm.UPDATE_COMPLETE, csm.UPDATE_FAILED,
                                    csm.DELETE_FAILED])
def test_settled_clusters_wait(status):
    # Even with a shortage, a surplus or unprovisioned hosts: a settled cluster is left alone.
    hosts = [claimed("m0", MASTERS), claimed("m1", MASTERS)]
    step = csm.plan(view(hosts, status=status))
    assert isinstance(step, Wait)
    assert step.reason == "settled"


# --- claiming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", csm.IN_PROGRESS)
def test_shortage_claims_the_missing_count_per_group(status):
    step = csm.plan(view([], status=status, masters=3, workers=5))
    assert step == Claim({MASTERS: 3, WORKERS: 5})


def test_shortage_claims_only_for_short_groups():
    hosts = [host("m0", MASTERS), host("w0"), host("w1")]
    groups = (ng(MASTERS, 1, csm.ROLE_MASTER), ng(WORKERS, 4), ng("gpu", 2), ng("idle", 0))
    step = csm.plan(view(hosts, groups=groups))
    assert step == Claim({WORKERS: 2, "gpu": 2})


# --- surplus -------------------------------------------------------------------------------------


def test_surplus_deprovisions_the_newest_hosts():
    hosts = [host("m0", MASTERS, created_at=1.0)] + [
        host(f"w{i}", created_at=float(t)) for i, t in enumerate([10, 40, 20, 30])]
    step = csm.plan(view(hosts, masters=1, workers=2, status=csm.UPDATE_IN_PROGRESS))
    assert isinstance(step, Deprovision)
    assert sorted(step.hosts) == ["w1", "w3"]  # created at 40 and 30


@pytest.mark.parametrize("by", ["name", "uuid"])
def test_surplus_prefers_the_hosts_named_in_nodes_to_remove(by):
    hosts = [host("m0", MASTERS)] + [
        host(f"w{i}", created_at=float(10 * i), uuid=f"u-{i}") for i in range(4)]
    remove = ("w0",) if by == "name" else ("u-0",)
    groups = (ng(MASTERS, 1, csm.ROLE_MASTER), ng(WORKERS, 2, remove=remove))
    step = csm.plan(view(hosts, groups=groups, status=csm.UPDATE_IN_PROGRESS))
    assert isinstance(step, Deprovision)
    # w0 (named, though the oldest), then the newest of the others (w3).
    assert sorted(step.hosts) == ["w0", "w3"]


def test_surplus_only_touches_the_groups_with_too_many():
    hosts = [host("m0", MASTERS, created_at=100.0), host("m1", MASTERS, created_at=1.0),
             host("w0", created_at=500.0), host("w1", created_at=600.0)]
    step = csm.plan(view(hosts, masters=1, workers=2, status=csm.UPDATE_IN_PROGRESS))
    assert step == Deprovision(("m0",))


def test_surplus_waits_while_it_is_being_cleaned():
    hosts = full() + [host("w2", state="deprovisioning", has_image=False, created_at=99.0)]
    step = csm.plan(view(hosts, status=csm.UPDATE_IN_PROGRESS))
    assert isinstance(step, Wait)
    assert "w2" in step.reason


def test_cleaned_surplus_is_released():
    hosts = full(created_at=1.0) + [claimed("w2", created_at=99.0)]
    step = csm.plan(view(hosts, status=csm.UPDATE_IN_PROGRESS))
    assert step == Release(("w2",))


def test_hosts_of_a_removed_group_are_surplus():
    hosts = full() + [host("g0", "gpu"), claimed("g1", "gpu")]
    step = csm.plan(view(hosts, status=csm.UPDATE_IN_PROGRESS))
    assert step == Deprovision(("g0",))


# --- failing hosts -------------------------------------------------------------------------------


@pytest.mark.parametrize("status, failed", [(csm.CREATE_IN_PROGRESS, csm.CREATE_FAILED),
                                            (csm.UPDATE_IN_PROGRESS, csm.UPDATE_FAILED)])
def test_a_host_failing_too_often_fails_the_cluster(status, failed):
    hosts = [host("m0", MASTERS), host("w0"),
             host("w1", state="provisioning", error_count=csm.HOST_ERRORS_BEFORE_FAILING,
                  error_message="image checksum mismatch")]
    step = csm.plan(view(hosts, status=status))
    assert isinstance(step, Settle)
    assert step.status == failed
    assert step.healthy is False
    assert "w1" in step.reason
    assert "image checksum mismatch" in step.reason


def test_a_host_with_fewer_errors_does_not_fail_the_cluster():
    hosts = [host("m0", MASTERS), host("w0"),
             host("w1", state="provisioning", error_count=csm.HOST_ERRORS_BEFORE_FAILING - 1,
                  error_message="transient")]
    step = csm.plan(view(hosts))
    assert isinstance(step, Wait)


# --- provisioning and verifying ------------------------------------------------------------------


def test_unprovisioned_hosts_are_provisioned():
    hosts = [host("m0", MASTERS), claimed("w0"), claimed("w1")]
    step = csm.plan(view(hosts))
    assert isinstance(step, Provision)
    assert sorted(step.hosts) == ["w0", "w1"]


@pytest.mark.parametrize("state", ["available", "provisioning"])
def test_hosts_being_provisioned_are_waited_for(state):
    hosts = [host("m0", MASTERS), host("w0"), host("w1", state=state)]
    step = csm.plan(view(hosts))
    assert isinstance(step, Wait)
    assert "1 host" in step.reason


def test_a_dependency_the_hosts_wait_for_is_in_the_reason_before_a_switch_error():
    hosts = [host("m0", MASTERS, port_error="ovs-vsctl timed out"),
             host("w0", state="provisioning", waiting="waiting for Ironic: connection refused"),
             host("w1", state="provisioning")]
    step = csm.plan(view(hosts))
    assert step == Wait("provisioning 2 host(s) (waiting for Ironic: connection refused)")
    hosts[1] = dataclasses.replace(hosts[1], waiting="")
    assert csm.plan(view(hosts)) == Wait(
        "provisioning 2 host(s) (switch: ovs-vsctl timed out; retrying)")
    cleaning = [host("m0", MASTERS, state="deprovisioning", has_image=False,
                     waiting="waiting for Ironic: it did not answer in time")]
    assert csm.plan(view(cleaning, deleting=True)).reason.endswith(
        "m0 (waiting for Ironic: it did not answer in time)")


@pytest.mark.parametrize("status", csm.IN_PROGRESS)
def test_all_provisioned_is_verified(status):
    hosts = full() + [host("w2")]
    assert csm.plan(view(hosts, status=status, workers=3)) == Verify(nodes=4)


@pytest.mark.parametrize("status, complete, verb", [
    (csm.CREATE_IN_PROGRESS, csm.CREATE_COMPLETE, "created"),
    (csm.UPDATE_IN_PROGRESS, csm.UPDATE_COMPLETE, "updated"),
])
def test_settle_verified(status, complete, verb):
    step = csm.settle_verified(view(full(), status=status))
    assert step.status == complete
    assert step.healthy is True
    assert verb in step.reason
    assert "3 host" in step.reason


# --- kubeadm roles -------------------------------------------------------------------------------


def test_kubeadm_roles():
    roles = csm.kubeadm_roles([("m0", csm.ROLE_MASTER), ("m1", csm.ROLE_MASTER),
                               ("m2", csm.ROLE_MASTER), ("w0", csm.ROLE_WORKER),
                               ("w1", csm.ROLE_WORKER)])
    assert roles == {"m0": "init", "m1": "control-plane", "m2": "control-plane",
                     "w0": "worker", "w1": "worker"}


def test_kubeadm_roles_one_master_and_only_workers():
    assert csm.kubeadm_roles([("m", csm.ROLE_MASTER), ("w", csm.ROLE_WORKER)]) == {
        "m": "init", "w": "worker"}
    assert csm.kubeadm_roles([("a", csm.ROLE_WORKER), ("b", csm.ROLE_WORKER)]) == {
        "a": "worker", "b": "worker"}
    assert csm.kubeadm_roles([]) == {}


# --- Cluster API ---------------------------------------------------------------------------------


def observed(objects: int = 3, ready: bool = False) -> CapiObserved:
    return CapiObserved(objects=objects, ready=ready, endpoint="10.0.0.1:6443" if ready else None)


@pytest.mark.parametrize("status", [csm.CREATE_COMPLETE, csm.DELETE_IN_PROGRESS,
                                    csm.CREATE_IN_PROGRESS])
def test_capi_deleting(status):
    assert csm.plan_capi(status, True, 2, 1, observed(objects=4)) == DeleteObjects()
    assert csm.plan_capi(status, True, 2, 1, observed(objects=0)) == Gone()


@pytest.mark.parametrize("status", [csm.CREATE_COMPLETE, csm.UPDATE_COMPLETE, csm.CREATE_FAILED,
                                    csm.UPDATE_FAILED, csm.DELETE_FAILED])
def test_capi_settled_waits(status):
    step = csm.plan_capi(status, False, 5, 1, observed(objects=0))
    assert isinstance(step, Wait)


@pytest.mark.parametrize("status", csm.IN_PROGRESS)
def test_capi_applies_a_newer_generation(status):
    assert csm.plan_capi(status, False, 3, 2, observed(objects=4, ready=True)) == ApplyObjects()


@pytest.mark.parametrize("status", csm.IN_PROGRESS)
def test_capi_applies_when_no_objects_exist(status):
    assert csm.plan_capi(status, False, 2, 2, observed(objects=0)) == ApplyObjects()


@pytest.mark.parametrize("status, complete", [(csm.CREATE_IN_PROGRESS, csm.CREATE_COMPLETE),
                                              (csm.UPDATE_IN_PROGRESS, csm.UPDATE_COMPLETE)])
def test_capi_ready_settles_complete(status, complete):
    step = csm.plan_capi(status, False, 2, 2, observed(objects=4, ready=True))
    assert isinstance(step, Settle)
    assert step.status == complete
    assert step.healthy is True


@pytest.mark.parametrize("status", csm.IN_PROGRESS)
def test_capi_not_ready_waits(status):
    step = csm.plan_capi(status, False, 2, 2, observed(objects=4, ready=False))
    assert isinstance(step, Wait)


# --- the cluster's API endpoint -----------------------------------------------------------------
def endpoint_view(hosts, status=csm.CREATE_IN_PROGRESS, deleting=False, ready=False, held=False):
    return dataclasses.replace(view(hosts, status, deleting), endpoint_wanted=True,
                               endpoint_ready=ready, endpoint_held=held)


def test_the_endpoint_comes_before_the_hosts_are_provisioned():
    """The hosts' user data names the endpoint: it exists before they are deployed."""
    hosts = [claimed("m0", MASTERS), claimed("w0"), claimed("w1")]
    assert isinstance(csm.plan(endpoint_view(hosts)), csm.EnsureEndpoint)
    assert isinstance(csm.plan(endpoint_view(hosts, ready=True, held=True)), Provision)


def test_claims_come_before_the_endpoint():
    assert isinstance(csm.plan(endpoint_view([])), Claim)


def test_a_settled_cluster_gets_a_dead_endpoint_back():
    settled = endpoint_view(full(), csm.CREATE_COMPLETE, held=True)
    assert isinstance(csm.plan(settled), csm.EnsureEndpoint)
    assert isinstance(csm.plan(dataclasses.replace(settled, endpoint_ready=True)), Wait)


def test_deleting_removes_the_endpoint_after_the_hosts():
    deleting = endpoint_view(full(), csm.CREATE_COMPLETE, deleting=True, ready=True, held=True)
    assert isinstance(csm.plan(deleting), Deprovision)
    assert isinstance(csm.plan(dataclasses.replace(deleting, hosts=())), csm.RemoveEndpoint)
    gone = dataclasses.replace(deleting, hosts=(), endpoint_held=False)
    assert isinstance(csm.plan(gone), Gone)


def test_a_failed_cluster_gives_its_endpoint_back():
    failed = endpoint_view([], csm.CREATE_FAILED, held=True)
    assert isinstance(csm.plan(failed), csm.RemoveEndpoint)
    assert isinstance(csm.plan(dataclasses.replace(failed, endpoint_held=False)), Wait)


def test_without_load_balancers_nothing_changes():
    hosts = [claimed("m0", MASTERS), claimed("w0"), claimed("w1")]
    assert isinstance(csm.plan(view(hosts)), Provision)


# --- auto-healing ---------------------------------------------------------------------------------


def healing(hosts, status=csm.CREATE_COMPLETE, max_unhealthy=1, workers=2, enabled=True):
    return dataclasses.replace(view(hosts, status=status, workers=workers),
                               auto_healing=enabled, max_unhealthy=max_unhealthy)


def failed(name, nodegroup=WORKERS):
    return host(name, nodegroup, error_count=csm.HOST_ERRORS_BEFORE_FAILING,
                error_message="power on failed: the Ironic node is gone")


@pytest.mark.parametrize("status", [csm.CREATE_COMPLETE, csm.UPDATE_COMPLETE])
def test_a_failed_worker_of_a_settled_cluster_is_replaced(status):
    step = csm.plan(healing([host("m0", MASTERS), host("w0"), failed("w1")], status=status))
    assert step == csm.Heal(("w1",), "host w1 failed: power on failed: the Ironic node is gone")


def test_a_host_with_fewer_errors_is_not_replaced_yet_and_without_the_label_none_is():
    almost = host("w1", error_count=csm.HOST_ERRORS_BEFORE_FAILING - 1)
    assert csm.plan(healing([host("m0", MASTERS), host("w0"), almost])) == Wait("settled")
    off = healing([host("m0", MASTERS), host("w0"), failed("w1")], enabled=False)
    assert csm.plan(off) == Wait("settled")


def test_more_failed_than_max_unhealthy_replaces_none_and_says_why():
    step = csm.plan(healing([host("m0", MASTERS), failed("w0"), failed("w1")]))
    assert isinstance(step, csm.HoldHealing)
    assert step.reason == ("2 hosts of node group default-worker failed (w0, w1), more than "
                           "max_unhealthy (1): none is replaced")
    assert isinstance(csm.plan(healing([host("m0", MASTERS), failed("w0"), failed("w1")],
                                       max_unhealthy=2)), csm.Heal)


def test_masters_are_not_healed_and_failed_clusters_are_left_alone():
    assert csm.plan(healing([failed("m0", MASTERS), host("w0"), host("w1")])) == Wait("settled")
    assert csm.plan(healing([host("m0", MASTERS), host("w0"), failed("w1")],
                            status=csm.UPDATE_FAILED)) == Wait("settled")


def test_a_worker_gone_from_a_settled_cluster_is_replaced():
    step = csm.plan(healing([host("m0", MASTERS), host("w0")]))
    assert step == csm.Heal((), "node group default-worker has 1 of 2 hosts")


def test_the_auto_healing_labels_are_checked():
    from teapot.resources import cluster_rules
    from teapot.resources.errors import ValidationError

    assert cluster_rules.auto_healing({}) == (False, 1)
    assert cluster_rules.auto_healing({"auto_healing_enabled": "True",
                                       "auto_healing_max_unhealthy": "0"}) == (True, 0)
    for labels, field in (({"auto_healing_enabled": "sometimes"}, "labels.auto_healing_enabled"),
                          ({"auto_healing_max_unhealthy": "-1"}, "labels.auto_healing_max_unhealthy"),
                          ({"auto_healing_max_unhealthy": "two"}, "labels.auto_healing_max_unhealthy")):
        with pytest.raises(ValidationError) as refused:
            cluster_rules.auto_healing(labels)
        assert refused.value.field == field


# --- rolling upgrades -----------------------------------------------------------------------------
OLD, NEW = "t-old v1.36.3", "t-new v1.37.2"


def upgrading(hosts, masters=1, workers=2, **changes) -> ClusterView:
    return dataclasses.replace(view(hosts, status=csm.UPDATE_IN_PROGRESS, masters=masters,
                                    workers=workers),
                               release=NEW, upgrading=True, endpoint_held=True, **changes)


def run_upgrade(hosts: list[HostView], free: list[str], masters=1, workers=2,
                ready: bool = True) -> list[str]:
    """Carry out plan() as the conductor would, with `free` hosts in the pool, until it verifies;
    returns what was done, one line per step."""
    log, in_place, leaving = [], [], []
    hosts = {h.name: h for h in hosts}
    for _ in range(60):
        step = csm.plan(upgrading(list(hosts.values()), masters, workers,
                                  in_place=tuple(in_place), leaving=tuple(leaving)))
        if isinstance(step, Claim):
            (group, count), = step.counts.items()
            if not free:
                in_place.append(step.surge)
                log.append(f"in place {step.surge}")
                continue
            name = free.pop(0)
            hosts[name] = claimed(name, group)
            log.append(f"surge {name} for {step.surge}")
        elif isinstance(step, Provision):
            for name in step.hosts:
                hosts[name] = dataclasses.replace(hosts[name], has_image=True, state="provisioned",
                                                  release=NEW)
            log.append(f"provision {','.join(step.hosts)}")
        elif isinstance(step, csm.Retire):
            assert ready
            hosts[step.host] = dataclasses.replace(hosts[step.host], has_image=False,
                                                   state="deprovisioning", release="")
            if not step.in_place:
                leaving.append(step.host)
            log.append(f"retire {step.host}")
        elif isinstance(step, Wait):  # the host reconciler cleans what was deprovisioned
            hosts = {n: dataclasses.replace(h, state="available") if h.state == "deprovisioning"
                     else h for n, h in hosts.items()}
        elif isinstance(step, Release):
            for name in step.hosts:
                del hosts[name]
                free.append(name)  # back in the pool, cleaned
                leaving.remove(name)  # as the conductor forgets it
            log.append(f"release {','.join(step.hosts)}")
        elif isinstance(step, Verify):
            assert all(h.release == NEW for h in hosts.values())
            return log
        else:
            raise AssertionError(step)
    raise AssertionError(log)


def _old_cluster() -> list[HostView]:
    return [host("m0", MASTERS, release=OLD), host("w0", WORKERS, release=OLD),
            host("w1", WORKERS, release=OLD)]


def test_an_upgrade_with_a_free_host_surges_one_host_at_a_time_masters_first():
    assert run_upgrade(_old_cluster(), free=["f0"]) == [
        "surge f0 for m0", "provision f0", "retire m0", "release m0",
        "surge m0 for w0", "provision m0", "retire w0", "release w0",
        "surge w0 for w1", "provision w0", "retire w1", "release w1"]


def test_an_upgrade_without_free_hosts_replaces_workers_in_place_but_never_a_master():
    hosts = [host("m0", MASTERS, release=NEW), host("w0", WORKERS, release=OLD),
             host("w1", WORKERS, release=OLD)]
    assert run_upgrade(hosts, free=[]) == [
        "in place w0", "retire w0", "provision w0", "in place w1", "retire w1", "provision w1"]
    step = csm.plan(upgrading(_old_cluster(), in_place=("m0",)))
    assert isinstance(step, Settle) and step.status == csm.UPDATE_FAILED
    assert step.reason.startswith("upgrade stopped at master m0: no free host")


def test_an_upgrade_waits_for_the_replacement_to_be_ready_before_the_old_host_leaves():
    hosts = [host("m0", MASTERS, release=NEW), host("w0", WORKERS, release=OLD),
             host("w1", WORKERS, release=OLD), host("f0", WORKERS, release=NEW,
                                                    state="provisioning")]
    assert csm.plan(upgrading(hosts)) == Wait("upgrading: provisioning 1 host(s)")
    hosts[-1] = dataclasses.replace(hosts[-1], state="provisioned")
    assert csm.plan(upgrading(hosts)) == csm.Retire("w0", 3, ("f0", "m0"), in_place=False)


def test_a_finished_upgrade_verifies_and_settles_update_complete():
    hosts = [dataclasses.replace(h, release=NEW) for h in _old_cluster()]
    step = csm.plan(upgrading(hosts))
    assert step == Verify(3)
    assert csm.settle_verified(upgrading(hosts)).status == csm.UPDATE_COMPLETE


def test_a_replacement_that_fails_is_redone_once_then_the_upgrade_stops_naming_it():
    hosts = [host("m0", MASTERS, release=NEW), host("w0", WORKERS, release=OLD),
             host("w1", WORKERS, release=OLD),
             host("f0", WORKERS, release=NEW, state="provisioning", error_count=3,
                  error_message="deploy failed")]
    assert csm.plan(upgrading(hosts)) == csm.Redo("f0")
    step = csm.plan(upgrading(hosts, redone=("f0",)))
    assert step == Settle(csm.UPDATE_FAILED, "upgrade stopped at host f0: it failed: deploy failed",
                          healthy=False)


def test_a_stopped_upgrade_still_gives_back_what_it_replaced():
    hosts = [host("m0", MASTERS, release=NEW), host("w0", WORKERS, release=NEW),
             host("w9", WORKERS, state="available", has_image=False),
             host("w1", WORKERS, release=OLD)]
    stopped = dataclasses.replace(upgrading(hosts, leaving=("w9",)), status=csm.UPDATE_FAILED)
    assert csm.plan(stopped) == Release(("w9",))


def test_masters_are_not_replaced_without_a_load_balancer_before_them():
    step = csm.plan(dataclasses.replace(upgrading(_old_cluster()), endpoint_held=False))
    assert isinstance(step, Settle) and step.status == csm.UPDATE_FAILED
    assert "no load balancer" in step.reason


def test_the_upgrade_rules_follow_kubernetes_version_skew():
    from teapot.resources.cluster_rules import check_upgrade
    from teapot.resources.errors import ValidationError

    check_upgrade("v1.36.3", "v1.37.2")
    check_upgrade("v1.36.3", "v1.36.5")
    check_upgrade("v1.37.2", "v1.36.3", back_to="v1.36.3")  # a rollback
    with pytest.raises(ValidationError, match="v1.38.0 skips a minor release .upgrade to v1.37"):
        check_upgrade("v1.36.3", "v1.38.0")
    with pytest.raises(ValidationError, match="does not go back to v1.36.3$"):
        check_upgrade("v1.37.2", "v1.36.3")
    with pytest.raises(ValidationError, match=r"only back to v1.35.0"):
        check_upgrade("v1.37.2", "v1.36.3", back_to="v1.35.0")
