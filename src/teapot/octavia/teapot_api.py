"""Teapot's API as Octavia's API process reaches it: keystoneauth1 with the options of octavia.conf's
[teapot] section (a password auth plugin, and Teapot's endpoint from the catalog, service type
`teapot`, unless `endpoint_override` names it)."""

from __future__ import annotations

import threading
from typing import Any

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

GROUP = "teapot"
_registered = False
_lock = threading.Lock()
_adapter = None


class TeapotAPIError(Exception):
    """An answer of Teapot's API that is not a success: its status and its own words."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"Teapot answered {status}: {detail}")
        self.status, self.detail = status, detail


def register_opts(conf: cfg.ConfigOpts = cfg.CONF) -> None:
    global _registered
    if _registered:
        return
    ks_loading.register_session_conf_options(conf, GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    ks_loading.register_adapter_conf_options(conf, GROUP)
    conf.set_default("service_type", "teapot", group=GROUP)
    conf.set_default("valid_interfaces", ["internal", "public"], group=GROUP)
    _registered = True


def adapter():
    """One keystoneauth adapter per process (its token is cached and renewed by keystoneauth)."""
    global _adapter
    with _lock:
        if _adapter is None:
            register_opts()
            auth = ks_loading.load_auth_from_conf_options(cfg.CONF, GROUP)
            session = ks_loading.load_session_from_conf_options(cfg.CONF, GROUP, auth=auth)
            _adapter = ks_loading.load_adapter_from_conf_options(cfg.CONF, GROUP, session=session,
                                                                auth=auth)
        return _adapter


def _detail(response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("detail") or e.get("title")) for e in errors) or response.text
    except ValueError:
        return response.text[:500]


def call(method: str, path: str, json: Any = None) -> Any:
    """One request to Teapot's API (`path` under its /v1); the JSON answer, or None for 204/404
    of a GET or DELETE (the thing is not there); anything else not 2xx is a TeapotAPIError."""
    response = adapter().request(path, method, json=json, raise_exc=False, connect_retries=3)
    if response.status_code == 404 and method in ("GET", "DELETE"):
        return None
    if response.status_code >= 400:
        raise TeapotAPIError(response.status_code, _detail(response))
    return response.json() if response.content else None
