"""What a box with storage (`teapot up --storage`) sets up through the APIs once they answer:
the `s3` catalog entry of RADOS Gateway, Manila's default share type; and the wait until Manila's
and Cinder's schedulers see their Ceph back-ends (a share or volume asked for then is placed)."""

from __future__ import annotations

import time
from collections.abc import Callable

from teapot.deploy import keystone_setup

# Catalog entries of the storage services: (type, name) -> box service, path under its URL.
CATALOG = {("sharev2", "manilav2"): ("manila-api", "/v2"),
           ("share", "manila"): ("manila-api", "/v2"),
           ("volumev3", "cinderv3"): ("cinder-api", "/v3/%(project_id)s"),
           ("object-store", "swift"): ("rgw", "/swift/v1/AUTH_%(project_id)s"),
           ("s3", "s3"): ("rgw", ""),
           ("key-manager", "barbican"): ("barbican-api", "")}


class StorageError(Exception):
    pass


def register_s3(conn, url: str) -> None:
    keystone_setup.register_endpoints(conn, "s3", "s3", "RegionOne",
                                      {"public": url, "internal": url})


def unregister_all(conn, url_of: Callable[[str], str]) -> None:
    """Remove the storage services' catalog entries of a former run (a box without storage)."""
    for (service_type, _name), (service, path) in CATALOG.items():
        keystone_setup.unregister(conn, service_type, url_of(service) + path)


def _json(response, what: str) -> dict:
    if response.status_code >= 400:
        raise StorageError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


MANILA_VERSION = {"X-OpenStack-Manila-API-Version": "2.65"}


def ensure_share_type(conn, manila_url: str, name: str, backend: str) -> None:
    """The share type Manila's default names, made once (driver_handles_share_servers False)."""
    url = manila_url + "/v2/types"
    types = _json(conn.session.get(url, headers=MANILA_VERSION, raise_exc=False,
                                   params={"is_public": "all"}), "list share types")
    if any(t["name"] == name for t in types.get("share_types", [])):
        return
    body = {"share_type": {"name": name, "share_type_access:is_public": True,
                           "extra_specs": {"driver_handles_share_servers": "False",
                                           "share_backend_name": backend}}}
    _json(conn.session.post(url, json=body, headers=MANILA_VERSION, raise_exc=False),
          f"create share type {name}")


def ensure_encrypted_volume_type(conn, cinder_url: str, name: str, backend: str,
                                 encryption: dict) -> None:
    """A public volume type on `backend` whose volumes are encrypted as `encryption` says, made
    once; its keys are made in Barbican by Cinder, one per volume."""
    base = f"{cinder_url}/v3/{conn.current_project_id}/types"
    types = _json(conn.session.get(base, raise_exc=False, params={"is_public": "None"}),
                  "list volume types")["volume_types"]
    found = next((t for t in types if t["name"] == name), None)
    if found is None:
        found = _json(conn.session.post(base, raise_exc=False, json={"volume_type": {
            "name": name, "os-volume-type-access:is_public": True,
            "description": "LUKS-encrypted volumes, keys in Barbican",
            "extra_specs": {"volume_backend_name": backend}}}), f"create volume type {name}"
        )["volume_type"]
    url = f"{base}/{found['id']}/encryption"
    if not _json(conn.session.get(url, raise_exc=False), f"encryption of {name}"):
        _json(conn.session.post(url, raise_exc=False, json={"encryption": encryption}),
              f"encrypt volume type {name}")


def _services_up(conn, url: str, binaries: set[str], headers: dict | None = None) -> bool:
    """Whether every one of `binaries` reports itself up (from the database: no RPC)."""
    r = conn.session.get(url, raise_exc=False, headers=headers, timeout=10)
    if r.status_code != 200:
        return False
    up = {s["binary"] for s in r.json().get("services", []) if s.get("state") == "up"}
    return binaries <= up


def _has_pools(conn, url: str, headers: dict | None = None) -> bool:
    # Asked of the scheduler over RPC: only once it runs (a call before its queue exists waits
    # for the RPC timeout).
    try:
        r = conn.session.get(url, raise_exc=False, headers=headers, timeout=15)
    except Exception:  # noqa: BLE001 - a timeout: asked again
        return False
    return r.status_code == 200 and bool(r.json().get("pools"))


def wait_backends(conn, manila_url: str, cinder_url: str, timeout: float = 300.0,
                  stop: Callable[[], bool] = lambda: False,
                  check: Callable[[], None] = lambda: None) -> None:
    """Until Manila's scheduler has a pool and Cinder's a back-end; `check` raises when a service
    of the box has exited meanwhile."""
    project = conn.current_project_id
    cinder = f"{cinder_url}/v3/{project}"
    pending = {
        "manila": lambda: (_services_up(conn, manila_url + "/v2/services",
                                        {"manila-scheduler", "manila-share"}, MANILA_VERSION)
                           and _has_pools(conn, manila_url + "/v2/scheduler-stats/pools",
                                          MANILA_VERSION)),
        "cinder": lambda: (_services_up(conn, cinder + "/os-services",
                                        {"cinder-scheduler", "cinder-volume"})
                           and _has_pools(conn, cinder + "/scheduler-stats/get_pools")),
    }
    deadline = time.monotonic() + timeout
    while pending and not stop():
        for name, ready in list(pending.items()):
            if ready():
                del pending[name]
        if not pending:
            return
        check()
        if time.monotonic() > deadline:
            raise StorageError(f"no back-end in the scheduler of {' and '.join(pending)} after "
                               f"{timeout:.0f} s (see logs/manila-share.log, "
                               "logs/cinder-volume.log)")
        time.sleep(0.5)
