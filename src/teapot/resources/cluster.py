"""The cluster state machine: Magnum's statuses, and what a cluster's hosts need next.

`plan()` looks at a cluster, its node groups and the hosts it holds, and returns the one next step;
the conductor carries it out (claiming hosts is one guarded statement, see `db.clusters`). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from teapot import releases as versions

CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
CREATE_COMPLETE = "CREATE_COMPLETE"
CREATE_FAILED = "CREATE_FAILED"
UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
UPDATE_COMPLETE = "UPDATE_COMPLETE"
UPDATE_FAILED = "UPDATE_FAILED"
DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
DELETE_FAILED = "DELETE_FAILED"

IN_PROGRESS = (CREATE_IN_PROGRESS, UPDATE_IN_PROGRESS)
FAILED = {CREATE_IN_PROGRESS: CREATE_FAILED, UPDATE_IN_PROGRESS: UPDATE_FAILED}
COMPLETE = {CREATE_IN_PROGRESS: CREATE_COMPLETE, UPDATE_IN_PROGRESS: UPDATE_COMPLETE}
SETTLED = (CREATE_COMPLETE, UPDATE_COMPLETE, CREATE_FAILED, UPDATE_FAILED, DELETE_FAILED)
HEALTHY_SETTLED = (CREATE_COMPLETE, UPDATE_COMPLETE)
HOST_ERRORS_BEFORE_FAILING = 3
DEFAULT_KUBERNETES_VERSION = versions.KUBERNETES[-1]  # the label kube_tag chooses another

ROLE_MASTER = "master"
ROLE_WORKER = "worker"


@dataclass(frozen=True)
class HostView:
    name: str
    uuid: str
    nodegroup: str
    state: str  # the host's provisioning state
    has_image: bool  # spec.image is set: asked to be provisioned
    error_count: int = 0
    error_message: str = ""
    created_at: float = 0.0
    on_network: bool = True  # its switch port is on the cluster's tenant VLAN (or it has none)
    port_error: str = ""
    waiting: str = ""  # a dependency its provisioner waits for ("waiting for Ironic: ...")
    release: str = ""  # the template and Kubernetes release it was provisioned with ("" none)


@dataclass(frozen=True)
class NodeGroupView:
    name: str
    role: str
    node_count: int
    flavor_id: str | None
    nodes_to_remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterView:
    status: str
    deleting: bool
    nodegroups: tuple[NodeGroupView, ...]
    hosts: tuple[HostView, ...]
    # Storage credentials (see resources.storage): the rotation wanted (0: the cluster asks for no
    # storage), the rotation of the credential Teapot holds (0: none), whether Keystone may still
    # hold some of the cluster's credentials, whether replaced ones wait to be deleted, and the
    # rotation last pushed into the running cluster.
    credential_rotation: int = 0
    credential_made: int = 0
    credentials_held: bool = False
    stale_credentials: bool = False
    credential_pushed: int = 0
    # The cluster's API endpoint (a load balancer on its tenant network and the public one):
    # wanted when the cloud runs load balancers and the cluster has a tenant network; ready when
    # it runs and sends to the current masters; held while any of it exists.
    endpoint_wanted: bool = False
    endpoint_ready: bool = False
    endpoint_held: bool = False
    # Auto-healing (label auto_healing_enabled): a settled cluster's worker that keeps failing,
    # or is gone, is replaced; never more than max_unhealthy of a node group at once.
    auto_healing: bool = False
    max_unhealthy: int = 1
    # A rolling upgrade (see `_upgrade`): the release every host should run, hosts that found
    # no free host to surge onto (replaced in place), replaced hosts on their way back to the
    # pool, and replacements that failed and were redone once since the upgrade was (re)started.
    release: str = ""
    upgrading: bool = False
    in_place: tuple[str, ...] = ()
    leaving: tuple[str, ...] = ()
    redone: tuple[str, ...] = ()


# -- steps ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """Claim this many more free hosts per node group, all or none. `surge`: the host an
    upgrade replaces with the one claimed (none free: it is replaced in place)."""

    counts: dict[str, int]
    surge: str = ""


@dataclass(frozen=True)
class Provision:
    hosts: tuple[str, ...]  # host names to give the cluster's image and user data


@dataclass(frozen=True)
class Deprovision:
    hosts: tuple[str, ...]  # host names to clear (image removed, powered off)


@dataclass(frozen=True)
class Release:
    hosts: tuple[str, ...]  # deprovisioned host names to return to the pool


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class Settle:
    """Change status (COMPLETE or FAILED) with a reason."""

    status: str
    reason: str
    healthy: bool = True


@dataclass(frozen=True)
class Verify:
    """Every host is provisioned: check the cluster itself (apiserver ready, nodes joined)."""

    nodes: int


@dataclass(frozen=True)
class MakeCredentials:
    """Make the cluster's storage credential for this rotation; the one it replaces is deleted
    once the new one is stored."""

    rotation: int


@dataclass(frozen=True)
class PushCredentials:
    """Put this rotation's credentials into the running cluster (its Secrets), before the ones
    they replace are deleted: the cluster's storage plugins never hold a dead credential."""

    rotation: int


@dataclass(frozen=True)
class DeleteCredentials:
    """Delete credentials in Keystone: the replaced ones, or (stale_only false) all of them."""

    stale_only: bool = False


@dataclass(frozen=True)
class EnsureEndpoint:
    """Addresses for the hosts and the endpoint, and the endpoint's load balancer sending to the
    masters (made, or restored when its data plane died)."""


@dataclass(frozen=True)
class RemoveEndpoint:
    pass


@dataclass(frozen=True)
class Heal:
    """Replace failed workers of a settled cluster: the named hosts leave it (drained, released,
    deprovisioned) and the cluster goes UPDATE_IN_PROGRESS, which claims their replacements (the
    same hosts again once cleaned, when no other is free). No hosts: a node group is short."""

    hosts: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class HoldHealing:
    """More hosts failed than auto-healing may replace at once: nothing is done, and the
    cluster's health says why (as MachineHealthCheck's maxUnhealthy does)."""

    reason: str


@dataclass(frozen=True)
class Retire:
    """An upgrade's next host leaves once the hosts already on the new release are Nodes that are
    Ready and at least `nodes` Nodes are: drained, then deprovisioned; kept to be provisioned
    again (`in_place`) or given back to the pool (its replacement surged in)."""

    host: str
    nodes: int
    ready: tuple[str, ...]
    in_place: bool


@dataclass(frozen=True)
class Redo:
    """A replacement that failed during an upgrade is deprovisioned and provisioned once more."""

    host: str


@dataclass(frozen=True)
class Gone:
    pass


Step = (Claim | Provision | Deprovision | Release | Wait | Verify | Settle | MakeCredentials
        | PushCredentials | DeleteCredentials | EnsureEndpoint | RemoveEndpoint | Heal
        | HoldHealing | Retire | Redo | Gone)


def _credentials(view: ClusterView) -> Step | None:
    """The credential step a live cluster needs, if any: a rotation asked for, the new credential
    pushed into hosts that were provisioned with an older one, or replaced credentials left to
    delete. Comes before hosts are provisioned: their user data carries the current one."""
    if view.credential_rotation and view.credential_made < view.credential_rotation:
        return MakeCredentials(view.credential_rotation)
    if view.stale_credentials:
        running = any(h.has_image for h in view.hosts)
        if running and view.credential_pushed < view.credential_made:
            return PushCredentials(view.credential_made)
        return DeleteCredentials(stale_only=True)
    return None


def _by_group(view: ClusterView) -> dict[str, list[HostView]]:
    groups: dict[str, list[HostView]] = {ng.name: [] for ng in view.nodegroups}
    for host in view.hosts:
        groups.setdefault(host.nodegroup, []).append(host)
    return groups


def _surplus(view: ClusterView, groups: dict[str, list[HostView]]) -> list[HostView]:
    """Hosts beyond a group's node count: those named in nodes_to_remove first, then the newest."""
    out: list[HostView] = []
    wanted = {ng.name: ng for ng in view.nodegroups}
    for name, hosts in groups.items():
        ng = wanted.get(name)
        extra = len(hosts) - (ng.node_count if ng else 0)
        if extra <= 0:
            continue
        named = set(ng.nodes_to_remove) if ng else set()
        ordered = sorted(hosts, key=lambda h: (not ({h.name, h.uuid} & named), -h.created_at, h.name))
        out += ordered[:extra]
    return out


def _give_back(hosts: list[HostView]) -> Step | None:
    """Deprovision, then release, the given hosts; None when there are none."""
    provisioned = tuple(h.name for h in hosts if h.has_image)
    if provisioned:
        return Deprovision(provisioned)
    busy = [h.name for h in hosts if h.state != "available"]
    if busy:
        return Wait(f"waiting for {len(busy)} host(s) to be cleaned: {', '.join(sorted(busy))}"
                    f"{_held_by(hosts)}")
    if hosts:
        return Release(tuple(h.name for h in hosts))
    return None


def plan(view: ClusterView) -> Step:
    groups = _by_group(view)
    endpoint_gone = RemoveEndpoint() if view.endpoint_held else None
    if view.deleting:
        gone = DeleteCredentials() if view.credentials_held or view.stale_credentials else Gone()
        return _give_back(list(view.hosts)) or endpoint_gone or gone
    if view.status in (CREATE_FAILED,):
        return _give_back(list(view.hosts)) or endpoint_gone or Wait("failed; holds no hosts")
    credentials = _credentials(view)
    if credentials is not None:
        return credentials
    endpoint = EnsureEndpoint() if view.endpoint_wanted and not view.endpoint_ready else None
    leaving = [h for h in view.hosts if h.name in view.leaving]
    if view.status not in IN_PROGRESS:
        if leaving:  # an upgrade that stopped: what it replaced still goes back
            return _give_back(leaving) or Wait("releasing replaced hosts")
        if endpoint is not None and view.hosts:
            return endpoint
        healing = _healing(view, groups) if view.status in HEALTHY_SETTLED else None
        return healing or Wait("settled")

    # an upgrade's surge host is the one surplus host of its group until the old one retires
    surplus = leaving if view.upgrading else _surplus(view, groups)
    if surplus:
        return _give_back(surplus) or Wait("releasing hosts")
    shortage = {ng.name: ng.node_count - len(groups.get(ng.name, [])) for ng in view.nodegroups}
    shortage = {k: v for k, v in shortage.items() if v > 0}
    if shortage:
        return Claim(shortage)
    failing = [h for h in view.hosts if h.error_count >= HOST_ERRORS_BEFORE_FAILING]
    if failing:
        h = failing[0]
        if view.upgrading and h.release == view.release and h.name not in view.redone:
            return Redo(h.name)
        step = f"upgrade stopped at host {h.name}: it failed: " if view.upgrading \
            else f"host {h.name} failed: "
        return Settle(FAILED[view.status], step + h.error_message, healthy=False)
    if endpoint is not None:  # the hosts' user data names it
        return endpoint
    unprovisioned = [h for h in view.hosts if not h.has_image]
    cleaning = [h.name for h in unprovisioned if view.upgrading and h.state != "available"]
    if cleaning:  # replaced in place: provisioned again once cleaned
        return Wait(f"upgrading: cleaning {', '.join(sorted(cleaning))}{_held_by(view.hosts)}")
    if unprovisioned:
        return Provision(tuple(h.name for h in unprovisioned))
    held = _held_by(view.hosts)
    waiting = [h.name for h in view.hosts if h.state != "provisioned"]
    if waiting:
        verb = "upgrading: provisioning" if view.upgrading else "provisioning"
        return Wait(f"{verb} {len(waiting)} host(s){held}")
    # Provisioned hosts join the project's network before the cluster is declared complete.
    moving = [h for h in view.hosts if not h.on_network]
    if moving:
        return Wait(f"moving {len(moving)} host(s) to the tenant network{held}")
    if view.upgrading:
        upgrade = _upgrade(view, groups)
        if upgrade is not None:
            return upgrade
    return Verify(len(view.hosts))


def upgrade_order(view: ClusterView) -> list[HostView]:
    """The hosts in the order an upgrade replaces them: masters first, then each worker node
    group in turn, by name (workers are never newer than masters)."""
    role = {ng.name: ng.role for ng in view.nodegroups}
    return sorted(view.hosts, key=lambda h: (role.get(h.nodegroup) != ROLE_MASTER, h.nodegroup,
                                             h.name))


def _upgrade(view: ClusterView, groups: dict[str, list[HostView]]) -> Step | None:
    """The next step of a rolling upgrade, every host provisioned: the first host not on the new
    release is replaced by a free host of its class (surge: claimed, provisioned, joined, then
    the old one retires), or, when none is free, in place (retired, cleaned, provisioned again)
    as Metal3's maxSurge 0 does. Masters are replaced only by surge: a master replaced in place
    would leave its etcd member behind. None: every host is on the new release."""
    outdated = [h for h in upgrade_order(view) if h.release != view.release]
    if not outdated:
        return None
    host = outdated[0]
    group = next((ng for ng in view.nodegroups if ng.name == host.nodegroup), None)
    members = groups.get(host.nodegroup, [])
    current = tuple(sorted(h.name for h in view.hosts if h.release == view.release))
    if group is None or len(members) > group.node_count:  # its replacement has joined
        return Retire(host.name, len(view.hosts) - 1, current, in_place=False)
    if group.role == ROLE_MASTER and not view.endpoint_held:
        return Settle(UPDATE_FAILED, f"upgrade stopped at master {host.name}: the cluster's API "
                                     f"endpoint is this master's own address (the cloud gave it "
                                     f"no load balancer), so no master can be replaced",
                      healthy=False)
    if host.name not in view.in_place:
        return Claim({group.name: 1}, surge=host.name)
    if group.role == ROLE_MASTER:
        return Settle(UPDATE_FAILED, f"upgrade stopped at master {host.name}: no free host of "
                                     f"its class to replace it with (a master is never replaced "
                                     f"in place); free one and upgrade again", healthy=False)
    return Retire(host.name, len(view.hosts) - 1, current, in_place=True)


def unhealthy(host: HostView) -> bool:
    return host.error_count >= HOST_ERRORS_BEFORE_FAILING


def _healing(view: ClusterView, groups: dict[str, list[HostView]]) -> Step | None:
    """What auto-healing does for a settled cluster: its worker node groups only (a master
    replaced would be a new control plane)."""
    if not view.auto_healing:
        return None
    for ng in view.nodegroups:
        if ng.role != ROLE_WORKER:
            continue
        hosts = groups.get(ng.name, [])
        sick = sorted(h.name for h in hosts if unhealthy(h))
        if len(sick) > view.max_unhealthy:
            return HoldHealing(f"{len(sick)} hosts of node group {ng.name} failed "
                               f"({', '.join(sick)}), more than max_unhealthy "
                               f"({view.max_unhealthy}): none is replaced")
        if sick:
            host = next(h for h in hosts if h.name == sick[0])
            return Heal((host.name,), f"host {host.name} failed: {host.error_message}")
        if len(hosts) < ng.node_count:
            return Heal((), f"node group {ng.name} has {len(hosts)} of {ng.node_count} hosts")
    return None


def _held_by(hosts) -> str:
    """What holds the hosts back, for a Wait's reason: a dependency their provisioner waits for,
    or a switch that fails to move their ports."""
    waiting = sorted({h.waiting for h in hosts if h.waiting})
    if waiting:
        return f" ({waiting[0]})"
    switch = sorted({h.port_error for h in hosts if h.port_error})
    return f" (switch: {switch[0]}; retrying)" if switch else ""


def settle_verified(view: ClusterView) -> Settle:
    verb = "created" if view.status == CREATE_IN_PROGRESS else "updated"
    return Settle(COMPLETE[view.status], f"cluster {verb}: {len(view.hosts)} host(s) ready")


def kubeadm_roles(hosts_in_order: list[tuple[str, str]]) -> dict[str, str]:
    """kubeadm role per host: `init` for the first master, `control-plane` for the other masters,
    `worker` for the rest. Input: (host name, node group role), masters first in a stable order."""
    roles: dict[str, str] = {}
    first = True
    for name, role in hosts_in_order:
        if role == ROLE_MASTER:
            roles[name] = "init" if first else "control-plane"
            first = False
        else:
            roles[name] = "worker"
    return roles


# -- clusters through Cluster API in a management cluster ------------------------------------------
@dataclass(frozen=True)
class CapiObserved:
    objects: int  # this cluster's objects still in the management cluster
    ready: bool  # the Cluster reports Available
    endpoint: str | None  # host:port of the control plane


@dataclass(frozen=True)
class ApplyObjects:
    pass


@dataclass(frozen=True)
class DeleteObjects:
    pass


def plan_capi(status: str, deleting: bool, generation: int, applied_generation: int,
              observed: CapiObserved, credentials: ClusterView | None = None,
              applied_rotation: int = 0) -> Step | ApplyObjects | DeleteObjects:
    """Next step for a cluster whose machines Cluster API manages. `credentials`: a view whose
    credential fields say what the cluster's storage credentials need (node groups and hosts
    unused); `applied_rotation`: the credential rotation the applied objects carry."""
    creds = credentials or ClusterView(status, deleting, (), ())
    if deleting:
        if observed.objects:
            return DeleteObjects()
        return DeleteCredentials() if creds.credentials_held or creds.stale_credentials else Gone()
    credential_step = _credentials(creds) if status != CREATE_FAILED else None
    if isinstance(credential_step, DeleteCredentials) and observed.objects \
            and applied_rotation < creds.credential_made:
        return ApplyObjects()  # the new credential reaches the cluster before the old one goes
    if credential_step is not None:
        return credential_step
    if status not in IN_PROGRESS:
        rotated = creds.credential_made > applied_rotation and observed.objects
        return ApplyObjects() if rotated else Wait("settled")
    if applied_generation < generation or not observed.objects:
        return ApplyObjects()
    if observed.ready:
        verb = "created" if status == CREATE_IN_PROGRESS else "updated"
        return Settle(COMPLETE[status], f"cluster {verb} by Cluster API")
    return Wait("Cluster API is provisioning the machines")
