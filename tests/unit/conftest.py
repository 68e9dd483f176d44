"""Fixtures shared by unit tests: a real SQLite database built by Teapot's migrations."""

from __future__ import annotations

import pytest

from teapot.db.engine import make_engine, make_sessionmaker, upgrade


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'teapot.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture
def sm(db_url):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()
