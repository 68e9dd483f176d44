"""Ceph in a box (`teapot up --storage`): one monitor, one manager, one OSD with BlueStore on a
sparse file in the state directory, one MDS serving the CephFS `cephfs`, and RADOS Gateway (the
description of `rgw`, on this cluster) serving Swift and S3 with Keystone authentication.

Every cephx key is derived from a generated secret and rendered into a keyring of its own
(`etc/ceph/ceph.<name>.keyring`, owner-only); the monitor is made with all of them, and each daemon
imports its own again when it starts, so a changed capability reaches an existing cluster. The
daemons run in the foreground (the manager must: as a daemon its volumes module, which Manila
drives, fails), listen on 127.0.0.1 only (the monitor on its box port with msgr2, the others in
the box's range of ports), and log to stderr, that is to the box's logs.

Pools and the file system are made by the MDS's start (`ceph_admin`); Manila's share service and
Cinder's volume service start after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import uuid

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Service, Step
from teapot.deploy.services import rgw

MON = "ceph-mon"
MGR = "ceph-mgr"
OSD = "ceph-osd"
MDS = "ceph-mds"
RGW = rgw.NAME
CONFIG_DIR = "ceph"
DAEMON_PORTS = "ceph-daemons"  # first port of the range the daemons other than the monitor bind
DAEMON_PORT_COUNT = 30
FS_NAME = "cephfs"
FS_METADATA = "cephfs.cephfs.meta"
FS_DATA = "cephfs.cephfs.data"
VOLUMES_POOL = "volumes"
# Sparse: only what is written takes space. Its size is what Manila's scheduler sees as free, and it
# takes each new share's size off that until the share service next reports (a minute later),
# so a small file would refuse a minute's quick creates (deleted shares or not) as out of space.
OSD_BLOCK_BYTES = 100 * 2**30
RGW_USER = "client.rgw.box"
CINDER_USER = "client.cinder"
MANILA_USER = "client.manila"
TEAPOT_USER = "client.teapot"
# Teapot makes the per-project users of volume attachments (client.teapot-<project>) and sets their
# caps; it may run those commands on those entities only, and read the pool's image id objects.
TEAPOT_MON_CAPS = ", ".join(
    ["allow r"] + [f"allow command '{c}' with entity prefix client.teapot-"
                   for c in ("auth get-or-create", "auth caps", "auth get")])

# Every cephx entity of the box and its capabilities.
ENTITIES: dict[str, dict[str, str]] = {
    "mon.": {"mon": "allow *"},
    "client.admin": {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"},
    "mgr.x": {"mon": "allow profile mgr", "osd": "allow *", "mds": "allow *"},
    "osd.0": {"mon": "allow profile osd", "mgr": "allow profile osd", "osd": "allow *"},
    "mds.a": {"mon": "allow profile mds", "osd": "allow rwx", "mds": "allow",
              "mgr": "allow profile mds"},
    RGW_USER: {"mon": "allow rw", "osd": "allow rwx", "mgr": "allow rw"},
    CINDER_USER: {"mon": "profile rbd", "osd": f"profile rbd pool={VOLUMES_POOL}",
                  "mgr": f"profile rbd pool={VOLUMES_POOL}"},
    # Manila's CephFS driver works through the manager's volumes module.
    MANILA_USER: {"mon": "allow r", "mgr": "allow rw"},
    TEAPOT_USER: {"mon": TEAPOT_MON_CAPS,
                  "osd": f"allow r pool={VOLUMES_POOL} object_prefix rbd_id."},
}


def _uuid(ctx: Context, name: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(ctx.secret(name).encode()).digest()[:16]))


def fsid(ctx: Context) -> str:
    return _uuid(ctx, "ceph-fsid")


def osd_uuid(ctx: Context) -> str:
    return _uuid(ctx, "ceph-osd-0-uuid")


def libvirt_secret_uuid(ctx: Context) -> str:
    """The uuid under which hosts would keep Cinder's Ceph key (rbd_secret_uuid)."""
    return _uuid(ctx, "ceph-cinder-secret-uuid")


def key(ctx: Context, entity: str) -> str:
    return rgw.cephx_key(ctx.secret(f"ceph-{entity}-key"))


def conf_path(ctx: Context) -> str:
    return ctx.config_path(CONFIG_DIR, "ceph.conf")


def keyring_path(ctx: Context, entity: str) -> str:
    return ctx.config_path(CONFIG_DIR, f"ceph.{entity.rstrip('.')}.keyring")


def _keyring_text(ctx: Context, entities) -> str:
    lines = []
    for entity in entities:
        lines += [f"[{entity}]", f"\tkey = {key(ctx, entity)}"]
        lines += [f'\tcaps {kind} = "{cap}"' for kind, cap in ENTITIES[entity].items()]
    return "\n".join(lines) + "\n"


def _keyring(entity: str) -> ConfigFile:
    # The monitor's own keyring holds every entity: the monitor is made (mkfs) with it.
    entities = list(ENTITIES) if entity == "mon." else [entity]
    return ConfigFile(f"ceph.{entity.rstrip('.')}.keyring",
                      lambda ctx: _keyring_text(ctx, entities), secret=True)


def mon_address(ctx: Context) -> str:
    return f"v2:{ctx.bind_host}:{ctx.port(MON)}"


def ceph_conf(ctx: Context) -> str:
    first = ctx.port(DAEMON_PORTS)
    return ini.render({
        "global": {
            "fsid": fsid(ctx),
            "mon_host": f"[{mon_address(ctx)}]",
            "public_addr": ctx.bind_host,
            "ms_bind_msgr1": False,
            "ms_bind_port_min": first,
            "ms_bind_port_max": first + DAEMON_PORT_COUNT - 1,
            "auth_cluster_required": "cephx",
            "auth_service_required": "cephx",
            "auth_client_required": "cephx",
            # $cluster and $name are Ceph's own metavariables.
            "keyring": ctx.config_path(CONFIG_DIR, "$cluster.$name.keyring"),
            "admin_socket": ctx.data_path(MON, "run/$name.asok"),
            "run_dir": ctx.data_path(MON, "run"),
            "crash_dir": ctx.data_path(MON, "crash"),
            "pid_file": "",
            "log_to_file": False,
            "log_to_stderr": True,
            "err_to_stderr": True,
            "mon_cluster_log_to_file": False,
            "osd_pool_default_size": 1,
            "osd_pool_default_min_size": 1,
            "osd_crush_chooseleaf_type": 0,
            "osd_pool_default_pg_autoscale_mode": "off",
            "osd_pool_default_pg_num": 8,
            "osd_pool_default_pgp_num": 8,
            "mon_allow_pool_size_one": True,
            "mon_allow_pool_delete": True,
            "mon_warn_on_pool_no_redundancy": False,
            "mon_max_pg_per_osd": 1000,
            "mon_data_avail_warn": 2,
            "mon_data_avail_crit": 1,
            "auth_allow_insecure_global_id_reclaim": False,
            "mon_warn_on_insecure_global_id_reclaim_allowed": False,
        },
        "mon": {"mon_data": ctx.data_path(MON, "$id"),
                # Modules the monitor enables in a new cluster (volumes is always on).
                "mgr_initial_modules": "iostat"},
        "mgr": {"mgr_data": ctx.data_path(MGR, "$id")},
        "osd": {
            "osd_data": ctx.data_path(OSD, "$id"),
            "osd_objectstore": "bluestore",
            "bluestore_block_path": ctx.data_path(OSD, "$id/block.file"),
            "bluestore_block_create": True,
            "bluestore_block_size": OSD_BLOCK_BYTES,
            "bluestore_fsck_on_mount": False,
            "bluestore_cache_autotune": False,
            "bluestore_cache_size": 128 * 2**20,
            "osd_memory_target": 896 * 2**20,
            "osd_max_object_name_len": 460,
            "osd_max_object_namespace_len": 64,
        },
        "mds": {"mds_data": ctx.data_path(MDS, "$id")},
        RGW_USER: {
            "rgw_frontends": f"beast endpoint={ctx.bind_host}:{ctx.port(RGW)}",
            "rgw_data": ctx.data_path(RGW, "rgw"),
            **rgw.keystone_options(ctx),
        },
    })


CONFIG = (ConfigFile("ceph.conf", ceph_conf), *(_keyring(e) for e in ENTITIES))


def _admin(ctx: Context, *actions: list[str]) -> str:
    """Shell running `ceph_admin` actions against the box's cluster."""
    words = ["python", "-m", "teapot.deploy.ceph_admin", conf_path(ctx)]
    for i, action in enumerate(actions):
        words += (["--"] if i else []) + action
    return shlex.join(words)


def _then(ctx: Context, setup: str, daemon: list[str]) -> list[str]:
    return ["sh", "-c", f"set -e\n{setup}\nexec {shlex.join(daemon)}"]


def _mon_mkfs(ctx: Context) -> list[str]:
    monmap = ctx.data_path(MON, "monmap")
    data = ctx.data_path(MON, "a")
    return ["sh", "-c", "\n".join([
        "set -e",
        shlex.join(["rm", "-rf", data]),
        shlex.join(["monmaptool", "--create", "--clobber", "--fsid", fsid(ctx),
                    "--addv", "a", f"[{mon_address(ctx)}]", monmap]),
        shlex.join(["ceph-mon", "--mkfs", "-i", "a", "-c", conf_path(ctx), "--monmap", monmap,
                    "--keyring", keyring_path(ctx, "mon.")]),
    ])]


def _run_dir(ctx: Context) -> list[str]:
    return ["mkdir", "-p", ctx.data_path(MON, "run")]


MON_SERVICE = Service(
    name=MON,
    description="Ceph monitor (the box's storage cluster)",
    package="",  # Debian's ceph-mon
    image="ceph",
    port=6789,
    config_files=CONFIG,
    config_dir=CONFIG_DIR,
    bootstrap=(Step("mkfs", _mon_mkfs, once=True), Step("run dir", _run_dir)),
    command=lambda ctx: ["ceph-mon", "-f", "-i", "a", "-c", conf_path(ctx)],
    # No HTTP: ready when its port takes connections.
)

MGR_SERVICE = Service(
    name=MGR,
    description="Ceph manager (its volumes module serves Manila)",
    package="",
    image="ceph",
    config_files=CONFIG,
    config_dir=CONFIG_DIR,
    command=lambda ctx: _then(ctx, _admin(ctx, ["import", keyring_path(ctx, "mgr.x")]),
                              ["ceph-mgr", "-f", "-i", "x", "-c", conf_path(ctx)]),
    depends_on=(MON,),
)


def _osd_mkfs(ctx: Context) -> list[str]:
    data = ctx.data_path(OSD, "0")
    return ["sh", "-c", "\n".join([
        "set -e",
        shlex.join(["rm", "-rf", data]),
        shlex.join(["mkdir", "-p", data, ctx.data_path(MON, "run")]),
        shlex.join(["ceph-osd", "--mkfs", "--no-mon-config", "-i", "0", "-c", conf_path(ctx),
                    "--osd-uuid", osd_uuid(ctx)]),
    ])]


OSD_SERVICE = Service(
    name=OSD,
    description="Ceph OSD (BlueStore on a sparse file in the state directory)",
    package="",
    image="ceph",
    config_files=CONFIG,
    config_dir=CONFIG_DIR,
    # Making the store needs no monitor (the fsid is in ceph.conf): it runs while others start.
    bootstrap=(Step("mkfs", _osd_mkfs, once=True),),
    command=lambda ctx: _then(ctx, _admin(ctx, ["import", keyring_path(ctx, "osd.0")],
                                          ["osd", "0", osd_uuid(ctx)]),
                              ["ceph-osd", "-f", "-i", "0", "-c", conf_path(ctx)]),
    depends_on=(MON,),
)


def _mds_marker(ctx: Context) -> str:
    return ctx.data_path(MDS, "cluster-ready")


def _mds_command(ctx: Context) -> list[str]:
    clients = [["import", keyring_path(ctx, e)] for e in ("mds.a", RGW_USER, CINDER_USER,
                                                            MANILA_USER, TEAPOT_USER)]
    setup = _admin(ctx, *clients,
                   ["pool", FS_METADATA, "cephfs"], ["pool", FS_DATA, "cephfs"],
                   ["fs", FS_NAME, FS_METADATA, FS_DATA],
                   ["pool", VOLUMES_POOL, "rbd"],
                   ["mark", _mds_marker(ctx)])
    return _then(ctx, f"rm -f {shlex.quote(_mds_marker(ctx))}\n{setup}",
                 ["ceph-mds", "-f", "-i", "a", "-c", conf_path(ctx)])


def _mds_ready(ctx: Context) -> bool:
    import os

    return os.path.exists(_mds_marker(ctx))


MDS_SERVICE = Service(
    name=MDS,
    description="Ceph MDS of the CephFS `cephfs`; its start makes the pools and the file system",
    package="",
    image="ceph",
    config_files=CONFIG,
    config_dir=CONFIG_DIR,
    command=_mds_command,
    depends_on=(MGR, OSD),
    # Ready once the pools, the file system and the clients' users exist.
    extra={"ready": _mds_ready},
)


def _rgw_command(ctx: Context) -> list[str]:
    return _then(ctx, _admin(ctx, ["import", keyring_path(ctx, RGW_USER)]),
                 ["radosgw", "-f", "-n", RGW_USER, "-c", conf_path(ctx)])


RGW_SERVICE = dataclasses.replace(
    rgw.SERVICE,
    description="Object storage through RADOS Gateway (Swift and S3 APIs) on the box's Ceph",
    config_files=CONFIG,
    config_dir=CONFIG_DIR,
    command=_rgw_command,
    depends_on=("keystone", OSD),
)


def box_services() -> list[Service]:
    return [MON_SERVICE, MGR_SERVICE, OSD_SERVICE, MDS_SERVICE, RGW_SERVICE]

