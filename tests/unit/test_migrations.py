"""The migrations on a real SQLite file: an older database keeps its rows when it is upgraded."""

from __future__ import annotations

import sqlite3

from alembic import command
from alembic.config import Config

from teapot.db import clusters as cdb
from teapot.db.engine import MIGRATIONS, make_engine, make_sessionmaker, upgrade


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def test_traits_arrive_empty_on_existing_host_classes_and_go_again(tmp_path):
    path = tmp_path / "teapot.sqlite"
    url = f"sqlite:///{path}"
    command.upgrade(_config(url), "0002")
    with sqlite3.connect(path) as db:
        assert "traits" not in [r[1] for r in db.execute("PRAGMA table_info(host_classes)")]
        db.execute("INSERT INTO host_classes (name, description, labels, created_at) "
                   "VALUES ('baremetal', '', '{\"class\": \"baremetal\"}', 0)")
    upgrade(url)
    with make_sessionmaker(make_engine(url))() as session:
        selector = cdb.Selector.of(cdb.host_class(session, "baremetal"))
    assert selector == cdb.Selector({"class": "baremetal"}, ())
    command.downgrade(_config(url), "0002")
    with sqlite3.connect(path) as db:
        assert "traits" not in [r[1] for r in db.execute("PRAGMA table_info(hosts)")]
        assert db.execute("SELECT name FROM host_classes").fetchall() == [("baremetal",)]
