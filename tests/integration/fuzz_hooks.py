"""Schemathesis hooks for the fuzz test: a refused write must leave the database as it was.

The fuzz test stops the conductor first, so between two calls only the API writes. Before each call
the whole database (every row of every table) is digested; after a refused POST, PATCH, PUT or
DELETE (any 4xx or 5xx), the digest must be unchanged. The database file comes from
TEAPOT_FUZZ_DATABASE.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

import schemathesis

WRITES = {"POST", "PATCH", "PUT", "DELETE"}
_before: dict[str, str] = {}


def digest() -> str:
    path = os.environ["TEAPOT_FUZZ_DATABASE"]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        h = hashlib.sha256()
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            h.update(table.encode())
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() in WRITES:
        _before["digest"] = digest()


@schemathesis.check
def no_half_written_rows(ctx, response, case):
    """A refused write changed nothing in the database."""
    if case.method.upper() not in WRITES or response.status_code < 400 or "digest" not in _before:
        return None
    if digest() != _before["digest"]:
        raise AssertionError(f"{case.method} {case.path} was refused ({response.status_code}) "
                             f"but changed the database")
    return True
