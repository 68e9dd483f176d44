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
def sent(caplog):
    """The commands networking-generic-switch's `netmiko_fake` device received, in order (it
    logs each instead of opening SSH); each call returns those since the last."""
    import logging

    logger = "networking_generic_switch.devices.netmiko_devices.fake"
    caplog.set_level(logging.INFO, logger=logger)

    def commands() -> list[str]:
        out = [r.getMessage() for r in caplog.records if r.name == logger]
        caplog.clear()
        return out

    return commands


@pytest.fixture
def sm(db_url):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


# -- the API in process, on a real database; tokens name fixed identities -------------------------------
class Tokens:
    """Stands in for Keystone's token validation: each token is one identity; `add` makes more,
    with the access rules of an application credential."""

    def __init__(self):
        ident = self._identity
        self.identities = {
            "admin": ident("admin", "p-admin", "admin", "member", "reader"),
            "alice": ident("alice", "p-one", "member", "reader"),
            "bob": ident("bob", "p-two", "member", "reader"),
            "rita": ident("rita", "p-one", "reader"),
        }

    @staticmethod
    def _identity(user: str, project: str, *roles: str, access_rules=None):
        from teapot.api.auth import Identity

        return Identity(user_id=f"{user}-id", user_name=user, project_id=project,
                        project_name=project, roles=roles, system_scope=None,
                        is_admin_project=False,
                        access_rules=None if access_rules is None else tuple(access_rules))

    def add(self, token: str, project: str, *roles: str, access_rules=None) -> str:
        self.identities[token] = self._identity(token, project, *roles,
                                                access_rules=access_rules)
        return token

    def validate(self, token: str):
        from teapot.api.auth import InvalidToken

        if token not in self.identities:
            raise InvalidToken("the token is not valid (expired, revoked or malformed)")
        return self.identities[token]


@pytest.fixture
def api_conf(tmp_path, db_url):
    from teapot import config

    conf_file = tmp_path / "teapot.conf"
    conf_file.write_text(
        "[database]\nconnection = " + db_url + "\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        "[secrets]\nkey_file = " + str(tmp_path / "secret.key") + "\n"
        "[api]\nmax_limit = 100\n")
    return config.load(str(conf_file))


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def identity_driver():
    """The API's clusters' Keystone credentials driver (None: one from the configuration, which
    reaches no Keystone); a test overrides it to stand in for Keystone."""
    return None


@pytest.fixture
def client(api_conf, tokens, identity_driver):
    """A TestClient of the API; `call(client, token, ...)` sends that identity's token."""
    from starlette.testclient import TestClient

    from teapot.api import app as api_app

    app = api_app.build(api_conf, validator=tokens, identity=identity_driver)
    with TestClient(app, base_url="http://teapot") as c:
        yield c


def call(client, who: str, method: str, path: str, **kwargs):
    headers = {"X-Auth-Token": who, "OpenStack-API-Version": "container-infra latest",
               **kwargs.pop("headers", {})}
    return client.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def enforcer():
    """Teapot's policy enforcer as the API builds it: from Teapot's parsed configuration."""
    from oslo_config import cfg

    from teapot.api.policy import Enforcer

    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[], use_env=False)
    return Enforcer(conf)
