"""Cluster queries: templates, clusters, node groups, quotas, and claiming hosts.

A claim takes free hosts for every node group that needs them in one transaction: candidates are
chosen in SQL (scarcest node group first, plainest hosts first), and the UPDATE only touches hosts
still unclaimed, so the row count proves no host went to two clusters; any shortfall rolls the whole
claim back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from teapot.db import addresses, pagination
from teapot.db.hosts import NotFound, _is_uuid
from teapot.db.models import Cluster, ClusterTemplate, Host, HostClass, NodeGroup, Quota


class ClaimShortage(Exception):
    pass


@dataclass(frozen=True)
class Selector:
    """What a host class asks of a host: every one of these labels and traits."""

    labels: dict[str, str] = field(default_factory=dict)
    traits: tuple[str, ...] = ()

    @classmethod
    def of(cls, host_class: HostClass) -> Selector:
        return cls(dict(host_class.labels), tuple(host_class.traits or ()))

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.labels.items())] + list(self.traits)
        return ", ".join(parts)


def _match(selector: Selector):
    # Traits are stored as a JSON list of upper-case names: '"NAME"' occurs in it only as an element.
    return and_(*(Host.labels[key].as_string() == value for key, value in selector.labels.items()),
                *(func.instr(Host.traits, f'"{trait}"') > 0 for trait in selector.traits))


def free_hosts_query(selector: Selector):
    # Plainer hosts first, so that hosts with special hardware stay free for the classes asking for it.
    return (select(Host.id).where(Host.cluster_uuid.is_(None), Host.state == "available",
                                  Host.deleting.is_(False), _match(selector))
            .order_by(func.length(Host.traits), Host.name))


def count_matching(session: Session, selector: Selector, free_only: bool = False) -> int:
    query = select(func.count(Host.id)).where(_match(selector), Host.deleting.is_(False))
    if free_only:
        query = query.where(Host.cluster_uuid.is_(None), Host.state == "available")
    return session.scalar(query) or 0


def claim(sm: sessionmaker, cluster_uuid: str, wants: dict[str, tuple[int, str, Selector]]) -> None:
    """Claim hosts: `wants` maps node group → (count, host class name, its selector). All or none;
    raises ClaimShortage naming the node group that could not be satisfied."""
    with sm.begin() as session:
        # The node groups with the fewest candidates choose first: a general class must not take
        # the only hosts a narrower class can use.
        scarcity = {ng: count_matching(session, sel, free_only=True) for ng, (_, _, sel) in wants.items()}
        for nodegroup in sorted(wants, key=lambda ng: scarcity[ng]):
            count, class_name, selector = wants[nodegroup]
            ids = list(session.scalars(free_hosts_query(selector).limit(count)))
            if len(ids) < count:
                raise ClaimShortage(
                    f"not enough free hosts for node group {nodegroup} (host class {class_name}): "
                    f"needs {count}, {len(ids)} free")
            result = session.execute(
                update(Host).where(Host.id.in_(ids), Host.cluster_uuid.is_(None))
                .values(cluster_uuid=cluster_uuid, nodegroup=nodegroup, next_attempt_at=0.0)
                .execution_options(synchronize_session=False))
            if result.rowcount != len(ids):
                raise ClaimShortage(f"hosts for node group {nodegroup} were taken meanwhile")


def release(sm: sessionmaker, cluster_uuid: str, host_names: Sequence[str]) -> None:
    """Give hosts back to the pool, with the addresses they held on the cluster's network."""
    with sm.begin() as session:
        uuids = list(session.scalars(select(Host.uuid).where(
            Host.cluster_uuid == cluster_uuid, Host.name.in_(list(host_names)))))
        addresses.release_hosts(session, uuids)
        session.execute(
            update(Host).where(Host.cluster_uuid == cluster_uuid, Host.name.in_(list(host_names)))
            .values(cluster_uuid=None, nodegroup=None).execution_options(synchronize_session=False))


def hosts_of(session: Session, cluster_uuid: str) -> Sequence[Host]:
    return session.scalars(select(Host).where(Host.cluster_uuid == cluster_uuid)
                           .order_by(Host.name)).all()


def _get(session: Session, model, ident: str, project_id: str | None, what: str,
         public_ok: bool = False):
    column = model.uuid if _is_uuid(ident) else model.name
    query = select(model).where(column == ident)
    rows = session.scalars(query).all()
    visible = [r for r in rows if project_id is None or r.project_id == project_id
               or (public_ok and getattr(r, "public", False))]
    if not visible:
        raise NotFound(f"{what} {ident}")
    if len(visible) > 1:
        raise LookupError(f"several {what}s are named {ident}; use the uuid")
    return visible[0]


def get_template(session: Session, ident: str, project_id: str | None) -> ClusterTemplate:
    return _get(session, ClusterTemplate, ident, project_id, "cluster template", public_ok=True)


def get_cluster(session: Session, ident: str, project_id: str | None) -> Cluster:
    return _get(session, Cluster, ident, project_id, "cluster")


def templates(session: Session, project_id: str | None,
              page: pagination.Page | None = None) -> Sequence[ClusterTemplate]:
    query = select(ClusterTemplate).order_by(ClusterTemplate.id)
    if project_id is not None:
        query = query.where((ClusterTemplate.project_id == project_id) | ClusterTemplate.public)
    if page is not None:
        query = pagination.apply(session, query, page)
    return session.scalars(query).all()


LIST_COLUMNS = (Cluster.id, Cluster.uuid, Cluster.name, Cluster.project_id, Cluster.user_id,
                Cluster.cluster_template_id, Cluster.status, Cluster.status_reason, Cluster.attrs,
                Cluster.created_at, Cluster.updated_at)


def clusters(session: Session, project_id: str | None) -> Sequence:
    """Clusters for listing, as plain rows (no ORM objects, no CA or secrets)."""
    query = select(*LIST_COLUMNS).order_by(Cluster.id)
    if project_id is not None:
        query = query.where(Cluster.project_id == project_id)
    return session.execute(query).all()


def cluster_versions(session: Session, project_id: str | None,
                     page: pagination.Page | None = None) -> Sequence:
    """(uuid, updated_at, status, status_reason) of clusters in list order: what tells whether a
    rendered list entry is still current."""
    query = select(Cluster.uuid, Cluster.updated_at, Cluster.status,
                   Cluster.status_reason).order_by(Cluster.id)
    if project_id is not None:
        query = query.where(Cluster.project_id == project_id)
    if page is not None:
        query = pagination.apply(session, query, page)
    return session.execute(query).all()


def clusters_by_uuid(session: Session, uuids: Sequence[str]) -> dict[str, object]:
    rows = session.execute(select(*LIST_COLUMNS).where(Cluster.uuid.in_(list(uuids)))).all()
    return {r.uuid: r for r in rows}


def nodegroups(session: Session, cluster_uuids: Sequence[str]) -> dict[str, list[NodeGroup]]:
    """Node groups of many clusters in one query (never one query per cluster)."""
    out: dict[str, list[NodeGroup]] = {u: [] for u in cluster_uuids}
    if not cluster_uuids:
        return out
    for ng in session.scalars(select(NodeGroup).where(NodeGroup.cluster_uuid.in_(list(cluster_uuids)))
                              .order_by(NodeGroup.id)):
        out[ng.cluster_uuid].append(ng)
    return out


def node_counts(session: Session, project_id: str | None,
                cluster_uuids: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """(masters, workers) per cluster, counted in SQL in one statement."""
    masters = func.sum(case((NodeGroup.role == "master", NodeGroup.node_count), else_=0))
    workers = func.sum(case((NodeGroup.role != "master", NodeGroup.node_count), else_=0))
    query = select(NodeGroup.cluster_uuid, masters, workers).group_by(NodeGroup.cluster_uuid)
    params = {}
    if project_id is not None and cluster_uuids is None:
        query = query.where(NodeGroup.project_id == project_id)
    if cluster_uuids is not None:  # (clusters the caller already found in its project)
        # one compiled statement whatever the page's length (an expanding parameter)
        query = query.where(NodeGroup.cluster_uuid.in_(bindparam("uuids", expanding=True)))
        params["uuids"] = list(cluster_uuids)
    return {uuid: (int(m or 0), int(w or 0)) for uuid, m, w in session.execute(query, params)}


def host_class(session: Session, name: str) -> HostClass | None:
    return session.scalars(select(HostClass).where(HostClass.name == name)).first()


def quota(session: Session, project_id: str, resource: str = "Cluster") -> Quota | None:
    return session.scalars(select(Quota).where(Quota.project_id == project_id,
                                               Quota.resource == resource)).first()
