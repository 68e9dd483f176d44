"""Block volumes for a cluster's bare-metal hosts, without Nova: Cinder's attachments API, and a
per-project Ceph user that opens exactly the RBD images attached to that project's hosts.

Interface (``BlockDriver``): ``attach(caller, volume_id, host)``, ``detach(caller, attachment_id,
hosts)``, ``list(caller, hosts)``, ``show(caller, attachment_id, hosts)``; a ``Caller`` is the API
request's own Keystone token and project, a ``HostRef`` a Teapot host with its Ironic node uuid.

Cinder (``CinderBlock``)
  Every call carries the caller's token (rescoped through keystoneauth's v3.Token plugin, which
  also gives the catalog of the caller's project), so Cinder itself refuses a volume of another
  project (it answers 404: the volume is not visible). Attachments are made as Ironic's storage
  interface makes them: ``POST /v3/attachments`` (microversion 3.44) with ``instance_uuid`` = the
  host's Ironic node uuid and a connector describing the host (its name, an iSCSI initiator name
  derived from the node uuid, x86_64, linux, no multipath); Cinder answers with the connection
  info, then ``os-complete`` marks the volume in-use. Deleting an attachment that names an
  instance makes Cinder ask Nova whether the instance still uses it, unless the request carries a
  service token: deletes go out with Teapot's own token as X-Service-Token (keystoneauth's
  ServiceTokenAuthWrapper; the ``teapot`` user holds the ``service`` role).
  Cinder is the only record: the attachments of a cluster are the caller's project's attachments
  whose instance is the node of one of the cluster's hosts. Teapot keeps no table of them.

Ceph (``CephUsers``)
  Cinder's RBD connection info names Cinder's own Ceph user (``client.cinder``, which opens every
  volume of the pool) and may carry its keyring. Teapot never passes that on: the connection info
  it returns is rebuilt from an allow-list of fields, names ``client.teapot-<project id>`` and
  carries no key. That user's key reaches the cluster's hosts only in the cluster's add-ons
  (Secret ``openstack-block-storage``, made by the conductor through ``CephUsers.key``).
  The user's caps (``render_caps``) are ``mon 'profile rbd'`` and, per attached image, OSD caps
  on its objects only: ``r class-read`` on ``rbd_id.<name>`` (opening by name stats it and reads the id),
  ``class-read`` on ``rbd_info`` (the pool's config overrides, read on every open),
  ``rwx`` on ``rbd_header.<id>`` (header reads, watch, the exclusive lock's class methods) and
  ``rbd_object_map.<id>`` (object map updates), ``rw`` on ``rbd_data.<id>.`` (the data objects).
  librbd needs nothing else to open, read and write an image that is not a clone. Ceph matches
  object prefixes, not names: ``rbd_header.<id>`` would also match an id that starts with ``<id>``
  (ids are random hex of a dozen digits or more; the data prefix ends with its dot).
  Caps are recomputed from Cinder on every attach and detach (the project's attachments whose
  instance is a Teapot host of the project) and written with ``auth caps``. On attach, a failure
  to write the caps deletes the new attachment before the error is answered; on detach the caps
  are narrowed first, and widened again if Cinder then refuses the delete.
  Teapot talks to Ceph as ``[block] ceph_user``; in a box that is ``client.teapot``, whose mon
  caps allow only ``auth get-or-create``/``auth caps``/``auth get`` on entities named
  ``client.teapot-*`` (Ceph's ``allow command ... with entity prefix``) and whose OSD caps read only
  the pool's ``rbd_id.`` objects (an image's id, to name its objects in the caps).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

LOG = logging.getLogger(__name__)

ATTACH_MICROVERSION = "3.44"  # attachments without Nova from 3.27; os-complete from 3.44
SERVICE_TYPE = "volumev3"
VOLUME_NAME = "volume-{}"  # Cinder's volume_name_template
USER_PREFIX = "client.teapot-"
INITIATOR_PREFIX = "iqn.2010-10.org.openstack.teapot:"
# Fields of Cinder's RBD connection data a host needs (never auth_username, keyring, secret_*).
RBD_FIELDS = ("name", "hosts", "ports", "cluster_name", "auth_enabled", "volume_id", "discard",
              "access_mode", "encrypted", "qos_specs")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_IMAGE_ID = re.compile(r"^[0-9a-f]{1,64}$")
_PROJECT = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class BlockError(Exception):
    """A request the block driver answers with an error; `status` is the HTTP status to give."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class CephError(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    token: str = field(repr=False)
    project_id: str


@dataclass(frozen=True)
class HostRef:
    uuid: str  # Teapot's host
    name: str
    node_uuid: str  # Ironic's node: the attachment's instance


@dataclass(frozen=True)
class Attachment:
    id: str
    volume_id: str
    host: HostRef
    status: str  # Cinder's attach_status
    connection_info: dict | None = None  # as Teapot returns it (no key, the project's user)


class BlockDriver(Protocol):
    def attach(self, caller: Caller, volume_id: str, host: HostRef) -> Attachment: ...

    def detach(self, caller: Caller, attachment_id: str, hosts: list[HostRef]) -> None: ...

    def list(self, caller: Caller, hosts: list[HostRef]) -> list[Attachment]: ...

    def show(self, caller: Caller, attachment_id: str, hosts: list[HostRef]) -> Attachment: ...


# -- pure pieces -----------------------------------------------------------------------------------
def ceph_user(project_id: str) -> str:
    if not _PROJECT.match(project_id or ""):
        raise ValueError(f"not a project id: {project_id!r}")
    return USER_PREFIX + project_id


def connector(host: HostRef) -> dict:
    """The os-brick style connector of a host: stable for the node (its initiator name)."""
    return {"host": host.name, "initiator": INITIATOR_PREFIX + host.node_uuid.lower(),
            "platform": "x86_64", "os_type": "linux", "multipath": False,
            "do_local_attach": False}


def render_caps(pool: str, images: dict[str, str]) -> dict[str, str]:
    """The caps of a project's Ceph user for `images` ({image name: image id}) in `pool`."""
    if not re.match(r"^[A-Za-z0-9_.-]+$", pool):
        raise ValueError(f"not a pool name: {pool!r}")
    grants = []
    for name, image_id in sorted(images.items()):
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError(f"not an image name: {name!r}")
        if not _IMAGE_ID.match(image_id):
            raise ValueError(f"not an image id: {image_id!r}")
        grants += [f"allow r class-read pool={pool} object_prefix rbd_id.{name}",
                   f"allow rwx pool={pool} object_prefix rbd_header.{image_id}",
                   f"allow rwx pool={pool} object_prefix rbd_object_map.{image_id}",
                   f"allow rw pool={pool} object_prefix rbd_data.{image_id}."]
    caps = {"mon": "profile rbd"}
    if grants:  # librbd reads the pool's config overrides (metadata of rbd_info) on open
        caps["osd"] = ", ".join([f"allow class-read pool={pool} object_prefix rbd_info",
                                 *grants])
    return caps


def decode_image_id(raw: bytes) -> str:
    """An image id as librbd stores it in rbd_id.<name>: a length-prefixed string."""
    if len(raw) < 4:
        raise CephError("the image's id object is empty")
    (length,) = struct.unpack("<I", raw[:4])
    image_id = raw[4:4 + length].decode()
    if len(raw) != 4 + length or not _IMAGE_ID.match(image_id):
        raise CephError("the image's id object is not a librbd image id")
    return image_id


def safe_connection_info(info: dict, user: str, secret_ref: dict) -> dict:
    """What a host needs of Cinder's connection info: an RBD image, the project's Ceph user, where
    its key is on the host; never Cinder's user, keyring or secret uuid."""
    kind = info.get("driver_volume_type")
    if kind != "rbd":
        raise BlockError(409, f"the volume's back-end attaches over {kind!r}; Teapot attaches "
                              "RBD volumes only")
    # The attachments API answers the connection data with driver_volume_type among it; the
    # older initialize_connection shape nests it under "data".
    data = info["data"] if isinstance(info.get("data"), dict) else info
    out = {k: data[k] for k in RBD_FIELDS if k in data}
    out.update(auth_enabled=True, auth_username=user.removeprefix("client."),
               secret_ref=secret_ref)
    return {"driver_volume_type": "rbd", "data": out}


# -- Ceph ------------------------------------------------------------------------------------------
class CephUsers:
    """The per-project Ceph users, managed over one librados connection as `admin_user`."""

    def __init__(self, conffile: str, admin_user: str, keyring: str | None, pool: str,
                 timeout: int = 30):
        self.conffile, self.admin_user, self.keyring, self.pool = conffile, admin_user, keyring, pool
        self.timeout = timeout
        self._cluster = None
        self._lock = threading.Lock()

    @classmethod
    def from_conf(cls, conf) -> CephUsers | None:
        b = conf.block
        if not b.ceph_conf:
            return None
        return cls(b.ceph_conf, b.ceph_user, b.ceph_keyring, b.pool)

    def _connect(self):
        import rados

        if self._cluster is None:
            extra = {"keyring": self.keyring} if self.keyring else {}
            cluster = rados.Rados(conffile=self.conffile, name=self.admin_user, conf=extra)
            try:
                cluster.connect(timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - rados errors: timeouts, refused, auth
                raise CephError(f"cannot reach Ceph as {self.admin_user}: "
                                f"{type(e).__name__}: {e}") from None
            self._cluster = cluster
        return self._cluster

    def _command(self, cmd: dict) -> bytes:
        with self._lock:
            cluster = self._connect()
            try:
                ret, out, err = cluster.mon_command(json.dumps(cmd), b"", timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - the connection broke: make a new one next
                self._cluster = None
                raise CephError(f"{cmd['prefix']}: {type(e).__name__}: {e}") from None
        if ret != 0:
            raise CephError(f"{cmd['prefix']} {cmd.get('entity', '')}: {err or ret}")
        return out

    def key(self, project_id: str) -> str:
        """The project's user's key, the user made when missing (with no caps until an attach)."""
        entity = ceph_user(project_id)
        out = self._command({"prefix": "auth get-or-create", "entity": entity, "format": "json"})
        try:
            return json.loads(out)[0]["key"]
        except (ValueError, LookupError, TypeError):
            raise CephError(f"auth get-or-create {entity}: unexpected answer") from None

    def image_id(self, name: str) -> str:
        import rados

        with self._lock:
            cluster = self._connect()
            try:
                with cluster.open_ioctx(self.pool) as ioctx:
                    raw = ioctx.read(f"rbd_id.{name}", 4096)
            except rados.ObjectNotFound:
                raise CephError(f"no RBD image {self.pool}/{name}") from None
            except Exception as e:  # noqa: BLE001
                self._cluster = None
                raise CephError(f"reading the id of {self.pool}/{name}: "
                                f"{type(e).__name__}: {e}") from None
        return decode_image_id(raw)

    def grant(self, project_id: str, images: list[str]) -> dict[str, str]:
        """Set the project's user's caps to open exactly `images` (names in the pool)."""
        entity = ceph_user(project_id)
        caps = render_caps(self.pool, {name: self.image_id(name) for name in images})
        self.key(project_id)  # exists before its caps are set
        words: list[str] = []
        for kind, cap in caps.items():
            words += [kind, cap]
        self._command({"prefix": "auth caps", "entity": entity, "caps": words})
        LOG.info("Ceph user %s may open %d image(s)", entity, len(images))
        return caps


# -- Cinder ----------------------------------------------------------------------------------------
def _volume_status_error(volume_id: str, status: int, message: str) -> BlockError:
    if status == 404:
        return BlockError(404, f"volume {volume_id} not found (or not in your project)")
    if status in (400, 409):
        return BlockError(409 if status == 409 else 400,
                          f"volume {volume_id} cannot be attached: {message}")
    if status == 403:
        return BlockError(403, f"volume {volume_id}: Cinder does not allow this: {message}")
    return BlockError(502, f"volume {volume_id}: Cinder answered {status}: {message}")


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    for value in body.values() if isinstance(body, dict) else ():
        if isinstance(value, dict) and "message" in value:
            return str(value["message"])[:300]
    return str(body)[:200]


class CinderBlock:
    """BlockDriver over Cinder's attachments API and the per-project Ceph users."""

    def __init__(self, auth_url: str, service_auth, users: CephUsers | None, secret_ref: dict,
                 interface: str = "public"):
        self.auth_url = auth_url
        self.service_auth = service_auth  # Teapot's own keystoneauth plugin (the service token)
        self.users = users
        self.secret_ref = secret_ref
        self.interface = interface
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _session(self, caller: Caller, service_token: bool = False):
        from keystoneauth1 import service_token as st
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth: Any = v3.Token(auth_url=self.auth_url, token=caller.token,
                             project_id=caller.project_id)
        if service_token:
            auth = st.ServiceTokenAuthWrapper(user_auth=auth, service_auth=self.service_auth)
        return session.Session(auth=auth, timeout=60)

    def _call(self, sess, method: str, path: str, **kw):
        from keystoneauth1 import exceptions as ksa_exc

        try:
            return sess.request(path, method, raise_exc=False,
                                endpoint_filter={"service_type": SERVICE_TYPE,
                                                 "interface": self.interface},
                                microversion=ATTACH_MICROVERSION,
                                microversion_service_type="volume", **kw)
        except ksa_exc.EndpointNotFound:
            raise BlockError(503, "the cloud's catalog has no block storage (Cinder)") from None
        except (ksa_exc.Unauthorized, ksa_exc.NotFound):
            raise BlockError(401, "your token cannot be used for Cinder (expired?)") from None
        except ksa_exc.ClientException as e:
            raise BlockError(502, f"Cinder cannot be reached: {type(e).__name__}") from None

    def _project_lock(self, project_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(project_id, threading.Lock())

    def _attachments(self, sess) -> list[dict]:
        r = self._call(sess, "GET", "/attachments/detail")
        if r.status_code != 200:
            raise BlockError(502, f"Cinder's attachments: {r.status_code}: {_message(r)}")
        return r.json().get("attachments", [])

    def _sync_caps(self, sess, caller: Caller, project_nodes: set[str],
                   plus: str | None = None, minus: str | None = None) -> None:
        """Caps for the volumes attached to the project's hosts, as Cinder lists them (with
        `plus` attached and `minus` not, whatever the list says)."""
        if self.users is None:
            raise BlockError(503, "Teapot has no Ceph configuration ([block] ceph_conf)")
        volumes = {a["volume_id"] for a in self._attachments(sess)
                   if (a.get("instance") or "") in project_nodes and a["id"] != minus}
        if plus:
            volumes.add(plus)
        self.users.grant(caller.project_id, sorted(VOLUME_NAME.format(v) for v in volumes))

    def _view(self, raw: dict, hosts: dict[str, HostRef], caller: Caller,
              info: dict | None = None) -> Attachment:
        connection = None
        if info:
            connection = safe_connection_info(info, ceph_user(caller.project_id), self.secret_ref)
        return Attachment(id=raw["id"], volume_id=raw["volume_id"],
                          host=hosts[raw.get("instance") or ""],
                          status=raw.get("attach_status") or raw.get("status") or "",
                          connection_info=connection)

    def _delete(self, caller: Caller, attachment_id: str):
        sess = self._session(caller, service_token=True)
        return self._call(sess, "DELETE", f"/attachments/{attachment_id}")

    def attach(self, caller: Caller, volume_id: str, host: HostRef,
               project_nodes: set[str] | None = None) -> Attachment:
        if not _UUID.match(volume_id):
            raise BlockError(400, f"volume_id: {volume_id[:60]!r} is not a uuid")
        nodes = set(project_nodes or ()) | {host.node_uuid}
        sess = self._session(caller)
        r = self._call(sess, "GET", f"/volumes/{volume_id}")
        if r.status_code != 200:
            raise _volume_status_error(volume_id, r.status_code, _message(r))
        for att in (r.json().get("volume") or {}).get("attachments") or []:
            # Cinder lets one instance hold several attachments of a volume (for moves): a host
            # gets a volume once.
            if att.get("server_id") == host.node_uuid:
                raise BlockError(409, f"volume {volume_id} is already attached to host "
                                      f"{host.name} (attachment {att.get('attachment_id')})")
        body = {"attachment": {"volume_uuid": volume_id, "instance_uuid": host.node_uuid,
                               "connector": connector(host)}}
        r = self._call(sess, "POST", "/attachments", json=body)
        if r.status_code not in (200, 202):
            raise _volume_status_error(volume_id, r.status_code, _message(r))
        made = r.json()["attachment"]
        info = made.get("connection_info") or {}
        try:
            expected = f"{self.users.pool if self.users else ''}/{VOLUME_NAME.format(volume_id)}"
            safe = safe_connection_info(info, ceph_user(caller.project_id), self.secret_ref)
            if safe["data"].get("name") != expected:
                raise BlockError(409, f"volume {volume_id} is not the RBD image {expected}")
            with self._project_lock(caller.project_id):
                self._sync_caps(sess, caller, nodes, plus=volume_id)
            c = self._call(sess, "POST", f"/attachments/{made['id']}/action",
                           json={"os-complete": None})
            if c.status_code not in (200, 202, 204):
                raise BlockError(502, f"volume {volume_id}: Cinder did not complete the "
                                      f"attachment: {c.status_code}: {_message(c)}")
        except (BlockError, CephError) as e:
            self._undo(caller, sess, made["id"], volume_id, nodes)
            if isinstance(e, CephError):
                raise BlockError(502, f"volume {volume_id} was not attached: the Ceph user "
                                      f"of the project could not be given it ({e}); the "
                                      "attachment was removed") from None
            raise
        LOG.info("volume %s attached to host %s (attachment %s)", volume_id, host.name,
                 made["id"])
        return Attachment(id=made["id"], volume_id=volume_id, host=host, status="attached",
                          connection_info=safe)

    def _undo(self, caller: Caller, sess, attachment_id: str, volume_id: str,
              nodes: set[str]) -> None:
        r = self._delete(caller, attachment_id)
        if r.status_code not in (200, 202, 204, 404):
            LOG.error("attachment %s of volume %s could not be removed: %s", attachment_id,
                      volume_id, r.status_code)
        try:
            with self._project_lock(caller.project_id):
                self._sync_caps(sess, caller, nodes, minus=attachment_id)
        except (BlockError, CephError) as e:
            LOG.error("Ceph caps of project %s after removing attachment %s: %s",
                      caller.project_id, attachment_id, e)

    def _get(self, sess, attachment_id: str, hosts: list[HostRef]) -> tuple[dict, dict]:
        if not _UUID.match(attachment_id):
            raise BlockError(404, f"volume attachment {attachment_id[:60]} not found")
        r = self._call(sess, "GET", f"/attachments/{attachment_id}")
        by_node = {h.node_uuid: h for h in hosts}
        if r.status_code == 200:
            raw = r.json()["attachment"]
            if (raw.get("instance") or "") in by_node:
                return raw, by_node
        elif r.status_code != 404:
            raise BlockError(502, f"Cinder's attachment {attachment_id}: {r.status_code}: "
                                  f"{_message(r)}")
        raise BlockError(404, f"volume attachment {attachment_id} not found in this cluster")

    def show(self, caller: Caller, attachment_id: str, hosts: list[HostRef]) -> Attachment:
        raw, by_node = self._get(self._session(caller), attachment_id, hosts)
        return self._view(raw, by_node, caller, raw.get("connection_info") or None)

    def list(self, caller: Caller, hosts: list[HostRef]) -> list[Attachment]:
        by_node = {h.node_uuid: h for h in hosts}
        raws = self._attachments(self._session(caller))
        return [self._view(a, by_node, caller) for a in raws
                if (a.get("instance") or "") in by_node]

    def detach(self, caller: Caller, attachment_id: str, hosts: list[HostRef],
               project_nodes: set[str] | None = None) -> None:
        sess = self._session(caller)
        raw, _ = self._get(sess, attachment_id, hosts)
        nodes = set(project_nodes or ()) | {h.node_uuid for h in hosts}
        with self._project_lock(caller.project_id):
            try:  # access goes first: the image is closed to the user before Cinder forgets it
                self._sync_caps(sess, caller, nodes, minus=attachment_id)
            except CephError as e:
                raise BlockError(502, f"volume {raw['volume_id']} was not detached: the Ceph "
                                      f"user of the project could not be narrowed ({e})") from None
            r = self._delete(caller, attachment_id)
            if r.status_code not in (200, 202, 204):
                try:
                    self._sync_caps(sess, caller, nodes)
                except (BlockError, CephError) as e:
                    LOG.error("Ceph caps of project %s: %s", caller.project_id, e)
                if r.status_code == 404:
                    raise BlockError(404, f"volume attachment {attachment_id} not found")
                raise BlockError(409 if r.status_code in (400, 409) else 502,
                                 f"volume {raw['volume_id']} was not detached: Cinder answered "
                                 f"{r.status_code}: {_message(r)}")
        LOG.info("volume %s detached (attachment %s)", raw["volume_id"], attachment_id)
