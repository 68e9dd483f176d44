"""The box's MariaDB, run by the local target as `teapot up --with-neutron` runs it: a new data
directory, owner-only; each database's user logs in over loopback with its generated password; a
second start corrects a changed password. Stopped by PID at the end, also on failure."""

from __future__ import annotations

import os
import shutil
import socket
import stat

import pymysql
import pytest
import yaml

from teapot.deploy.secrets import SecretStore
from teapot.deploy.services import mariadb
from teapot.deploy.targets.local import UMASK, LocalContext, LocalTarget

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mariadbd") is None,
                       reason="MariaDB (Debian mariadb-server) is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(ctx: LocalContext, database: str, password: str):
    return pymysql.connect(host="127.0.0.1", port=ctx.port("mariadb"), user=database,
                           password=password, database=database, connect_timeout=5)


def test_mariadb_serves_each_database_to_its_user_only(tmp_path):
    ctx = LocalContext(tmp_path, {"mariadb": _free_port()}, SecretStore(tmp_path / "secrets.yaml"),
                       settings={"profile": "box", "mariadb": ["neutron", "other"]})
    target = LocalTarget(ctx)
    previous = os.umask(UMASK)
    try:
        target.up(mariadb.SERVICE)
        with _connect(ctx, "neutron", ctx.secret("neutron-db-password")) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE t (i INT)")
                cur.execute("SHOW DATABASES")
                visible = {row[0] for row in cur.fetchall()}
        assert "neutron" in visible and "other" not in visible and "mysql" not in visible
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            _connect(ctx, "neutron", ctx.secret("other-db-password"))

        listening = [line for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if line.split()[1].endswith(f":{ctx.port('mariadb'):04X}")
                     and line.split()[3] == "0A"]
        assert listening and all(line.split()[1].startswith("0100007F:") for line in listening)

        data = tmp_path / "data" / "mariadb"
        loose = [str(p) for p in data.rglob("*")
                 if not p.is_symlink() and not p.is_socket() and p.stat().st_mode & 0o077]
        assert loose == []
        assert stat.S_IMODE((tmp_path / "etc" / "mariadb" / "init.sql").stat().st_mode) == 0o600

        # a new password (say, the secrets file was replaced) is the user's at the next start
        target.stop_all()
        secrets = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
        secrets["neutron-db-password"] = "it's a new \\ one"
        (tmp_path / "secrets.yaml").write_text(yaml.safe_dump(secrets))
        ctx.secrets = SecretStore(tmp_path / "secrets.yaml")
        target.up(mariadb.SERVICE)
        with _connect(ctx, "neutron", "it's a new \\ one") as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchone() == (0,)
    finally:
        target.stop_all()
        os.umask(previous)
