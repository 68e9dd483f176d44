"""MariaDB for a box: the database server of the services whose migrations need one (Neutron's do
not run on SQLite). Debian's `mariadb-server`, its data in the state directory, bound to loopback.

The databases it holds are named by `settings["mariadb"]`; each has a user of the same name whose
password is the generated secret `<database>-db-password`, as on the Kubernetes target, and the
context's `database_url` points those databases here. Users and databases are made on every start,
before the server listens, by `mariadbd --bootstrap` (the way `mariadb-install-db` itself fills a new
data directory): no step needs the server running, and no root password exists (root logs in only
through the socket, as the owner of the process).
"""

from __future__ import annotations

import getpass
import shlex
from collections.abc import Sequence

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Service, Step

NAME = "mariadb"


def databases(ctx: Context) -> list[str]:
    """The databases a box keeps in MariaDB."""
    return [str(db) for db in ctx.settings.get(NAME) or ()]


def password_secret(database: str) -> str:
    return f"{database}-db-password"


def url(ctx: Context, database: str) -> str:
    password = ctx.secret(password_secret(database))
    return (f"mysql+pymysql://{database}:{password}@{ctx.bind_host}:{ctx.port(NAME)}/{database}"
            "?charset=utf8")


def my_cnf(ctx: Context) -> str:
    return ini.render({
        "mysqld": {
            "user": getpass.getuser(),  # mariadbd refuses to run as root unless told to
            "datadir": ctx.data_path(NAME, "db"),
            "socket": ctx.data_path(NAME, "mysqld.sock"),
            "pid_file": ctx.data_path(NAME, "mysqld.pid"),
            "bind_address": ctx.bind_host,
            "port": ctx.port(NAME),
            "skip_name_resolve": 1,
            "skip_log_bin": 1,
            "character_set_server": "utf8mb4",
            "collation_server": "utf8mb4_general_ci",
            "max_connections": 200,
            # A box's database: small, and durable to the last second rather than the last commit.
            "innodb_buffer_pool_size": "64M",
            "innodb_log_file_size": "32M",
            "innodb_flush_log_at_trx_commit": 2,
            "innodb_doublewrite": 0,
        },
        "client": {"socket": ctx.data_path(NAME, "mysqld.sock")},
    })


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def init_sql(ctx: Context) -> str:
    """The databases and their users, created or corrected (passwords included)."""
    lines = ["FLUSH PRIVILEGES;"]  # --bootstrap starts without the grant tables loaded
    for db in databases(ctx):
        if not db.isidentifier():
            raise ValueError(f"MariaDB database name {db!r} must be letters, digits and _")
        user, password = f"{_quoted(db)}@{_quoted(ctx.bind_host)}", _quoted(
            ctx.secret(password_secret(db)))
        lines += [
            f"CREATE DATABASE IF NOT EXISTS `{db}`;",
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {password};",
            f"ALTER USER {user} IDENTIFIED BY {password};",
            f"GRANT ALL PRIVILEGES ON `{db}`.* TO {user};",
        ]
    return "\n".join(lines) + "\n"


def _cnf(ctx: Context) -> str:
    return ctx.config_path(NAME, "my.cnf")


def _install_db(ctx: Context) -> Sequence[str]:
    return ["mariadb-install-db", f"--defaults-file={_cnf(ctx)}",
            "--auth-root-authentication-method=socket", "--skip-test-db"]


def _create_databases(ctx: Context) -> Sequence[str]:
    sql = ctx.config_path(NAME, "init.sql")
    return ["sh", "-c", f"exec mariadbd --defaults-file={shlex.quote(_cnf(ctx))} --bootstrap "
                        f"< {shlex.quote(sql)}"]


def _env(ctx: Context) -> dict[str, str]:
    # The modes mariadbd creates files and directories with (its defaults let the group read).
    return {"UMASK": "0600", "UMASK_DIR": "0700"}


SERVICE = Service(
    name=NAME,
    description="MariaDB: the database server of services that need one in a box",
    package="",  # Debian's mariadb-server
    image="mariadb",
    port=3306,
    config_files=(ConfigFile("my.cnf", my_cnf), ConfigFile("init.sql", init_sql, secret=True)),
    bootstrap=(
        Step("install-db", _install_db, env=_env, once=True),
        Step("databases", _create_databases, env=_env),
    ),
    command=lambda ctx: ["mariadbd", f"--defaults-file={_cnf(ctx)}"],
    env=_env,
    # No HTTP: ready when its port takes connections.
)
