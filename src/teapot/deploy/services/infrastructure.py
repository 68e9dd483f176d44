"""What the OpenStack services stand on, on Kubernetes: MariaDB Galera, memcached and RabbitMQ.

Galera and RabbitMQ are StatefulSets: each pod has a stable DNS name
(`<name>-<i>.<name>.<namespace>.svc`, from the headless Service the target creates) that their
cluster configuration lists. The module-level services carry default volume sizes; `galera()` and
`rabbitmq()` apply teapot.yaml.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Service, Workload

GALERA_NAME = "galera"
MEMCACHED_NAME = "memcached"
RABBITMQ_NAME = "rabbitmq"
RABBITMQ_USER = "openstack"  # the user of ctx.messaging_url(), password "rabbitmq-password"

GALERA_DATA = "/var/lib/mysql"
RABBITMQ_DATA = "/var/lib/rabbitmq"


def _namespace(ctx: Context) -> str:
    return str(ctx.settings.get("namespace", "openstack"))


def _section(ctx: Context, key: str) -> Mapping:
    section = ctx.settings.get(key)
    return section if isinstance(section, Mapping) else {}


def members(ctx: Context, name: str, replicas: int) -> list[str]:
    """The stable DNS names of a StatefulSet's pods."""
    return [f"{name}-{i}.{name}.{_namespace(ctx)}.svc" for i in range(replicas)]


# --- Galera -------------------------------------------------------------------------------------


def galera_members(ctx: Context) -> list[str]:
    return members(ctx, GALERA_NAME, int(_section(ctx, "galera").get("replicas", 1)))


def galera_cnf(ctx: Context) -> str:
    return ini.render({
        "mysqld": {
            "bind_address": "0.0.0.0",
            "port": ctx.port(GALERA_NAME),
            "datadir": GALERA_DATA,
            "skip_name_resolve": 1,
            "max_connections": 4096,
            "max_allowed_packet": "256M",
            "binlog_format": "ROW",
            "default_storage_engine": "InnoDB",
            "innodb_autoinc_lock_mode": 2,
            "innodb_flush_log_at_trx_commit": 2,
            "innodb_buffer_pool_size": "256M",
            "wsrep_on": "ON",
            "wsrep_provider": "/usr/lib/galera/libgalera_smm.so",
            "wsrep_cluster_name": str(ctx.settings.get("name", "teapot")),
            "wsrep_cluster_address": "gcomm://" + ",".join(galera_members(ctx)),
            "wsrep_sst_method": "mariabackup",
            "wsrep_sst_auth": f"root:{ctx.secret('galera-root-password')}",
        },
    })


def _galera_command(ctx: Context) -> list[str]:
    """Start MariaDB; pod 0 bootstraps a new cluster when none of its peers answers (first start,
    or every pod down: the StatefulSet starts pod 0 first)."""
    peers = " ".join(shlex.quote(m) for m in galera_members(ctx)[1:])
    script = "\n".join([
        "set -e",
        'args=""',
        'if [ "${HOSTNAME##*-}" = 0 ]; then',
        "  alive=no",
        f"  for peer in {peers}; do",
        '    if timeout 2 bash -c "</dev/tcp/$peer/4567" 2>/dev/null; then alive=yes; fi',
        "  done",
        '  if [ "$alive" = no ]; then',
        f"    if [ -f {GALERA_DATA}/grastate.dat ]; then",
        "      sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "
        f"{GALERA_DATA}/grastate.dat",
        "    fi",
        "    args=--wsrep-new-cluster",
        "  fi",
        "fi",
        "exec docker-entrypoint.sh mariadbd "
        f"--defaults-extra-file={shlex.quote(ctx.config_path(GALERA_NAME, 'my.cnf'))} $args",
    ])
    return ["bash", "-c", script]


def _galera_env(ctx: Context) -> dict[str, str]:
    return {"MARIADB_ROOT_PASSWORD": ctx.secret("galera-root-password"),
            "MARIADB_ROOT_HOST": "%"}


GALERA = Service(
    name=GALERA_NAME,
    description="MariaDB Galera cluster: every service's database",
    package="",
    image="mariadb",
    port=3306,
    config_files=(ConfigFile("my.cnf", galera_cnf, secret=True),),
    command=_galera_command,
    env=_galera_env,
    settings_key="galera",
    workload=Workload(kind="StatefulSet", storage="10Gi", data_dir=GALERA_DATA,
                      cpu="250m", memory="1Gi"),
    extra={"cluster_ports": (4567, 4568, 4444)},
)


def galera(settings: Mapping) -> Service:
    return dataclasses.replace(GALERA, workload=dataclasses.replace(
        GALERA.workload, storage=settings["galera"]["storage"]))


# --- memcached ----------------------------------------------------------------------------------

MEMCACHED = Service(
    name=MEMCACHED_NAME,
    description="memcached: token and API caches",
    package="",
    image="memcached",
    port=11211,
    command=lambda ctx: ["memcached", "--port", str(ctx.port(MEMCACHED_NAME)), "--udp-port", "0",
                         "--listen", ctx.bind_host, "--memory-limit", "96",
                         "--conn-limit", "4096"],
    settings_key="memcached",
    workload=Workload(cpu="50m", memory="128Mi"),
)


# --- RabbitMQ -----------------------------------------------------------------------------------


def rabbitmq_members(ctx: Context) -> list[str]:
    return members(ctx, RABBITMQ_NAME, int(_section(ctx, "rabbitmq").get("replicas", 1)))


def rabbitmq_conf(ctx: Context) -> str:
    lines = [
        "# Generated by Teapot.",
        f"listeners.tcp.default = {ctx.port(RABBITMQ_NAME)}",
        f"default_user = {RABBITMQ_USER}",
        f"default_pass = {ctx.secret('rabbitmq-password')}",
        "loopback_users.guest = true",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i} = rabbit@{member}"
          for i, member in enumerate(rabbitmq_members(ctx), start=1)),
        "cluster_partition_handling = pause_minority",
        "",
    ]
    return "\n".join(lines)


def _rabbitmq_command(ctx: Context) -> list[str]:
    # Long node names are the pods' stable DNS names; the Erlang cookie, shared by every node,
    # comes from the environment into the file RabbitMQ reads.
    script = "\n".join([
        "set -e",
        f'export RABBITMQ_NODENAME="rabbit@$(hostname -s).{RABBITMQ_NAME}.{_namespace(ctx)}.svc"',
        f"cookie={RABBITMQ_DATA}/.erlang.cookie",
        'printf %s "$TEAPOT_ERLANG_COOKIE" > "$cookie"',
        'chmod 600 "$cookie"',
        'chown rabbitmq:rabbitmq "$cookie" 2>/dev/null || true',
        "unset TEAPOT_ERLANG_COOKIE",
        "exec docker-entrypoint.sh rabbitmq-server",
    ])
    return ["bash", "-c", script]


def _rabbitmq_env(ctx: Context) -> dict[str, str]:
    return {
        "RABBITMQ_USE_LONGNAME": "true",
        "RABBITMQ_CONFIG_FILE": ctx.config_path(RABBITMQ_NAME, "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": ctx.config_path(RABBITMQ_NAME, "enabled_plugins"),
        "TEAPOT_ERLANG_COOKIE": ctx.secret("rabbitmq-erlang-cookie"),
    }


RABBITMQ = Service(
    name=RABBITMQ_NAME,
    description="RabbitMQ: RPC for the services that still need it",
    package="",
    image="rabbitmq",
    port=5672,
    config_files=(ConfigFile("rabbitmq.conf", rabbitmq_conf, secret=True),
                  ConfigFile("enabled_plugins", lambda ctx: "[rabbitmq_prometheus].\n")),
    command=_rabbitmq_command,
    env=_rabbitmq_env,
    settings_key="rabbitmq",
    workload=Workload(kind="StatefulSet", storage="1Gi", data_dir=RABBITMQ_DATA, memory="512Mi"),
    extra={"cluster_ports": (4369, 25672)},
)


def rabbitmq(settings: Mapping) -> Service:
    return dataclasses.replace(RABBITMQ, workload=dataclasses.replace(
        RABBITMQ.workload, storage=settings["rabbitmq"]["storage"]))


# --- RabbitMQ in a box (`teapot up --storage`) --------------------------------------------------

EPMD_NAME = "epmd"
RABBITMQ_DIST = "rabbitmq-dist"  # the box port of RabbitMQ's Erlang distribution


def box_rabbitmq_conf(ctx: Context) -> str:
    return "\n".join([
        "# Generated by Teapot.",
        f"listeners.tcp.default = {ctx.bind_host}:{ctx.port(RABBITMQ_NAME)}",
        f"default_user = {RABBITMQ_USER}",
        f"default_pass = {ctx.secret('rabbitmq-password')}",
        "loopback_users.guest = true",
        "",
    ])


def _box_rabbitmq_env(ctx: Context) -> dict[str, str]:
    data = ctx.data_path(RABBITMQ_NAME, "")
    host = ",".join(ctx.bind_host.split("."))
    return {
        "HOME": data,  # its Erlang cookie, made on first start, owner-only
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": ctx.bind_host,
        "RABBITMQ_NODE_PORT": str(ctx.port(RABBITMQ_NAME)),
        "RABBITMQ_DIST_PORT": str(ctx.port(RABBITMQ_DIST)),
        "ERL_EPMD_PORT": str(ctx.port(EPMD_NAME)),
        "ERL_EPMD_ADDRESS": ctx.bind_host,
        # The Erlang distribution listens on loopback only, like everything in a box.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {{{host}}}",
        "RABBITMQ_MNESIA_BASE": ctx.data_path(RABBITMQ_NAME, "mnesia"),
        "RABBITMQ_LOG_BASE": ctx.data_path(RABBITMQ_NAME, "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CONFIG_FILE": ctx.config_path(RABBITMQ_NAME, "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": ctx.config_path(RABBITMQ_NAME, "enabled_plugins"),
        "RABBITMQ_PID_FILE": ctx.data_path(RABBITMQ_NAME, "rabbitmq.pid"),
    }


# Erlang's port mapper, run by the box (in the foreground, on loopback): RabbitMQ would otherwise
# start one that leaves its process group and outlives the box.
BOX_EPMD = Service(
    name=EPMD_NAME,
    description="Erlang port mapper daemon of the box's RabbitMQ",
    package="",  # Debian's erlang-base
    image="rabbitmq",
    port=4369,
    command=lambda ctx: ["epmd", "-address", ctx.bind_host, "-port", str(ctx.port(EPMD_NAME))],
)

BOX_RABBITMQ = dataclasses.replace(
    RABBITMQ,
    description="RabbitMQ: RPC of Manila and Cinder in the box",
    config_files=(ConfigFile("rabbitmq.conf", box_rabbitmq_conf, secret=True),
                  ConfigFile("enabled_plugins", lambda ctx: "[].\n")),
    # Debian's server script, without the wrapper that switches to the rabbitmq user.
    command=lambda ctx: ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
    env=_box_rabbitmq_env,
    depends_on=(EPMD_NAME,),
    extra={},
)


def box_messaging_url(ctx: Context, vhost: str = "") -> str:
    return (f"rabbit://{RABBITMQ_USER}:{ctx.secret('rabbitmq-password')}@{ctx.bind_host}:"
            f"{ctx.port(RABBITMQ_NAME)}/{vhost}")
