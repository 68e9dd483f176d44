"""Secrets at rest: the Fernet key file (teapot.crypto) and generated service secrets
(teapot.deploy.secrets)."""

from __future__ import annotations

import os
import stat

import pytest
import yaml
from cryptography.fernet import InvalidToken

from teapot.crypto import load_or_create_key
from teapot.deploy.secrets import SecretStore, write_private


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- load_or_create_key -------------------------------------------------------------------------------


def test_key_file_is_created_private(tmp_path):
    key_file = tmp_path / "data" / "teapot" / "secret.key"
    assert not key_file.exists()
    load_or_create_key(str(key_file))
    assert key_file.is_file()
    assert _mode(key_file) == 0o600


def test_second_load_uses_the_same_key(tmp_path):
    key_file = tmp_path / "secret.key"
    token = load_or_create_key(str(key_file)).encrypt(b"bmc password")
    key = key_file.read_bytes()
    again = load_or_create_key(str(key_file))
    assert again.decrypt(token) == b"bmc password"
    assert key_file.read_bytes() == key


def test_different_key_files_are_different_keys(tmp_path):
    token = load_or_create_key(str(tmp_path / "a.key")).encrypt(b"x")
    other = load_or_create_key(str(tmp_path / "b.key"))
    assert (tmp_path / "a.key").read_bytes() != (tmp_path / "b.key").read_bytes()
    with pytest.raises(InvalidToken):
        other.decrypt(token)


# --- SecretStore --------------------------------------------------------------------------------------


def test_secret_is_generated_once_and_kept(tmp_path):
    path = tmp_path / "state" / "secrets.yaml"
    store = SecretStore(path)
    assert not path.exists()  # nothing is written before a secret is asked for
    value = store.get("teapot-password")
    assert len(value) >= 24
    assert store.get("teapot-password") == value
    assert yaml.safe_load(path.read_text()) == {"teapot-password": value}


def test_secret_is_stable_across_instances(tmp_path):
    path = tmp_path / "secrets.yaml"
    first = SecretStore(path)
    values = {name: first.get(name) for name in ("admin-password", "bmc-password")}
    second = SecretStore(path)
    assert {name: second.get(name) for name in values} == values
    second.get("teapot-password")
    third = SecretStore(path)
    assert third.get("admin-password") == values["admin-password"]
    assert third.get("teapot-password") == second.get("teapot-password")


def test_secret_file_is_private(tmp_path):
    path = tmp_path / "secrets.yaml"
    SecretStore(path).get("admin-password")
    assert _mode(path) == 0o600


def test_secret_file_is_made_private_when_it_was_not(tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text("admin-password: kept\n")
    path.chmod(0o644)
    store = SecretStore(path)
    assert store.get("admin-password") == "kept"
    store.get("bmc-password")
    assert _mode(path) == 0o600
    assert yaml.safe_load(path.read_text())["admin-password"] == "kept"


def test_distinct_names_get_distinct_values(tmp_path):
    store = SecretStore(tmp_path / "secrets.yaml")
    names = [f"secret-{i}" for i in range(20)]
    values = [store.get(name) for name in names]
    assert len(set(values)) == len(names)


def test_write_private_replaces_the_file_with_mode_0600(tmp_path):
    path = tmp_path / "etc" / "teapot" / "teapot.conf"
    write_private(path, "one")
    write_private(path, "two")
    assert path.read_text() == "two"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["teapot.conf"]  # no temporary left
