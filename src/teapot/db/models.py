"""Teapot's tables. Migrations in `migrations/` create them; this module is their Python face."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    # hardware traits (os-traits names or CUSTOM_*), sorted; the conductor puts them on the Ironic node
    traits: Mapped[list] = mapped_column(JSON, default=list)
    spec: Mapped[dict] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    bmc_username: Mapped[str] = mapped_column(String(255))
    bmc_password: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    user_data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    bmc_version: Mapped[int] = mapped_column(Integer, default=1)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)

    # the cluster that claimed the host (one statement claims; never one host for two clusters)
    cluster_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    nodegroup: Mapped[str | None] = mapped_column(String(255), nullable=True)

    # status, written by the conductor
    state: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[dict] = mapped_column(JSON, default=dict)
    # the VLAN the host's switch port was last put on (None: unknown, or no switch port), and why
    # the last move failed
    port_vlan: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the network configuration the host is handed with its user data (OpenStack network_data.json)
    network_data: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    # scheduling and leases
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)

    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class HostEvent(Base):
    """What a conductor did to a host and when: the audit trail, and how overlap is checked."""

    __tablename__ = "host_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_uuid: Mapped[str] = mapped_column(String(36), index=True)
    conductor: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(Text)


class HostClass(Base):
    """A flavor for clusters: the host labels and traits a host must carry to be of this class."""

    __tablename__ = "host_classes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    traits: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float)


class ClusterTemplate(Base):
    __tablename__ = "cluster_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    attrs: Mapped[dict] = mapped_column(JSON, default=dict)  # the other Magnum fields
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Cluster(Base):
    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    cluster_template_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attrs: Mapped[dict] = mapped_column(JSON, default=dict)  # the other Magnum fields
    ca_cert: Mapped[bytes] = mapped_column(LargeBinary)
    ca_key: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    secrets: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted JSON: bootstrap token, keys
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    network_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)


class NodeGroup(Base):
    __tablename__ = "nodegroups"
    __table_args__ = (UniqueConstraint("cluster_uuid", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    cluster_uuid: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    flavor_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    image_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    node_count: Mapped[int] = mapped_column(Integer)
    min_node_count: Mapped[int] = mapped_column(Integer, default=0)
    max_node_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    nodes_to_remove: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Quota(Base):
    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("project_id", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(64))
    hard_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Network(Base):
    """A tenant network: one VLAN of the top-of-rack switches, owned by one project."""

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    vlan_id: Mapped[int] = mapped_column(Integer, unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    neutron_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # {"cidr", "gateway_ip", "dns_nameservers", "allocation_pool": {"start", "end"}}
    subnet: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Switch(Base):
    """A top-of-rack switch (from the switches file): who moves its ports now, and its last error."""

    __tablename__ = "switches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)


class Address(Base):
    """An address of a tenant network's subnet, held by a host or by a cluster (its endpoint)."""

    __tablename__ = "addresses"
    __table_args__ = (UniqueConstraint("network_uuid", "value"),
                      UniqueConstraint("network_uuid", "kind", "owner"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_uuid: Mapped[str] = mapped_column(String(36), index=True)
    value: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(36))
    cluster_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    created_at: Mapped[float] = mapped_column(Float)


class LoadBalancer(Base):
    """A project's load balancer: a public VIP and members on one of its tenant networks."""

    __tablename__ = "loadbalancers"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    network_uuid: Mapped[str] = mapped_column(String(36), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    vip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    tenant_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    provisioning_status: Mapped[str] = mapped_column(String(32))
    operating_status: Mapped[str] = mapped_column(String(32))
    status: Mapped[dict] = mapped_column(JSON, default=dict)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
