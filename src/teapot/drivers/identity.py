"""Per-cluster Keystone credentials: an application credential with access rules, and EC2
credentials for S3, in the cluster's project (keystoneauth1, as Teapot's service user).

Who owns them, and why: an application credential belongs to a user and dies with it, and Keystone
lets only that user create one. Owning them by the human who created the cluster would tie the
cluster's storage to that person's account (the complaint of Magnum's Cluster API driver users).
So each project gets one Teapot-managed user, `teapot-<project id>`, made by Teapot's service user
(which holds `admin`) with only the `member` role on that project; every cluster of the project gets
its own application credential of that user, restricted by access rules to the storage APIs its
plugins call, with the `member` role only and `unrestricted` false (it cannot make credentials or
trusts). The credential therefore outlives any human and reaches nothing outside its project.

The project user's password is never stored: it is an HMAC of the project id under a secret of
Teapot's (derived from its key file), and Teapot resets it with its admin rights when Keystone no
longer accepts it (a new key). EC2 credentials are made as Keystone credentials of type `ec2` whose
access key is derived from the cluster and its rotation, so a retried step finds what an earlier,
interrupted one made instead of leaking it.

Bucket credentials. Keystone refuses EC2 credentials to application credentials (its credential
API rejects delegated tokens), so a cluster cannot make its own per-access S3 keys. Teapot makes
them for it (its API, on the cluster's credential): EC2 credentials of the project's user tied to
the cluster's current application credential (blob `app_cred_id`, so RGW's Keystone EC2 check
refuses them once that credential is gone, and `delete_cluster` sweeps them with the cluster),
marked in their blob as the cluster's bucket credentials (`teapot_bucket`, with the cluster's
uuid), with a random access key. The secret is shown once, when made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as pysecrets
from dataclasses import dataclass
from datetime import UTC, datetime

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

MEMBER = "member"
USER_PREFIX = "teapot-"
MAX_BUCKET_CREDENTIALS = 100  # per cluster


class TooMany(Exception):
    """The cluster holds as many bucket credentials as it may."""


class IdentityError(Exception):
    """Keystone refused or failed; the message names the call, never a secret."""


@dataclass(frozen=True)
class ClusterCredentials:
    user_id: str
    application_credential_id: str
    application_credential_secret: str
    ec2_access: str | None = None
    ec2_secret: str | None = None

    def public(self) -> dict:
        """What may be shown: ids only."""
        return {"user_id": self.user_id, "application_credential_id": self.application_credential_id,
                "ec2_access": self.ec2_access}


def _describe(error: Exception) -> str:
    status = getattr(error, "http_status", None)
    details = getattr(error, "details", None) or getattr(error, "message", None) or type(error).__name__
    return f"{status}: {details}" if status else str(details)


def credential_name(cluster_uuid: str, rotation: int) -> str:
    return f"teapot-cluster-{cluster_uuid}-{rotation}"


def ec2_access(cluster_uuid: str, rotation: int) -> str:
    return hashlib.sha256(f"teapot-ec2:{cluster_uuid}:{rotation}".encode()).hexdigest()[:32]


class KeystoneCredentials:
    """Makes, finds and deletes clusters' credentials. `admin`: a keystoneauth session of Teapot's
    service user; `secret`: bytes the project users' passwords are derived from."""

    def __init__(self, admin: ks_session.Session, auth_url: str, secret: bytes,
                 user_domain_id: str = "default"):
        self.admin = admin
        self.auth_url = auth_url.rstrip("/")
        self._secret = hashlib.sha256(b"teapot-project-users:" + secret).digest()
        self.domain = user_domain_id

    @classmethod
    def from_conf(cls, conf) -> KeystoneCredentials:
        """As Teapot's service user ([keystone_authtoken]); the project users' passwords are
        derived from the secrets key file ([secrets] key_file), which must exist."""
        from pathlib import Path

        ka = conf.keystone_authtoken
        auth = v3.Password(auth_url=ka.auth_url, username=ka.username, password=ka.password,
                           project_name=ka.project_name, user_domain_name=ka.user_domain_name,
                           project_domain_name=ka.project_domain_name)
        return cls(ks_session.Session(auth=auth, timeout=30), ka.auth_url,
                   Path(conf.secrets.key_file).read_bytes())

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, what: str, method: str, path: str, sess=None, ok=(200, 201, 204), **kw):
        sess = sess or self.admin
        try:
            resp = sess.request(self.auth_url + path, method, raise_exc=False, **kw)
        except ks_exc.ClientException as e:
            raise IdentityError(f"Keystone: {what} failed: {_describe(e)}") from None
        if resp.status_code not in ok:
            try:
                message = resp.json().get("error", {}).get("message", "")
            except ValueError:
                message = resp.text[:200]
            raise IdentityError(f"Keystone: {what} failed: {resp.status_code} {message}".rstrip())
        return resp

    def _password(self, project_id: str) -> str:
        digest = hmac.new(self._secret, project_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _role_id(self, name: str) -> str:
        roles = self._call(f"finding role {name}", "GET", "/roles", params={"name": name}).json()
        if not roles["roles"]:
            raise IdentityError(f"Keystone has no role {name!r}")
        return roles["roles"][0]["id"]

    # -- the project's user ----------------------------------------------------------------------
    def project_user(self, project_id: str) -> str:
        """The id of the project's Teapot-managed user, made (member of the project) if missing."""
        if not project_id or "/" in project_id:
            raise IdentityError(f"not a project id: {project_id!r}")
        self._call(f"looking up project {project_id}", "GET", f"/projects/{project_id}")
        name = USER_PREFIX + project_id
        found = self._call("finding the project's user", "GET", "/users",
                           params={"name": name, "domain_id": self.domain}).json()["users"]
        if found:
            user_id = found[0]["id"]
        else:
            body = {"user": {"name": name, "domain_id": self.domain, "enabled": True,
                             "default_project_id": project_id, "password": self._password(project_id),
                             "description": "Teapot: owns the project's cluster credentials",
                             # Teapot alone logs in as this user, with a derived password: the
                             # cloud's password rules for people must not lock it out.
                             "options": {"ignore_password_expiry": True,
                                         "ignore_lockout_failure_attempts": True,
                                         "ignore_change_password_upon_first_use": True}}}
            resp = self._call("creating the project's user", "POST", "/users", json=body,
                              ok=(201, 409))
            if resp.status_code == 409:  # made meanwhile by another conductor
                return self.project_user(project_id)
            user_id = resp.json()["user"]["id"]
        self._call("granting the member role", "PUT",
                   f"/projects/{project_id}/users/{user_id}/roles/{self._role_id(MEMBER)}",
                   ok=(200, 201, 204))
        return user_id

    def _user_session(self, project_id: str, user_id: str) -> ks_session.Session:
        """A session of the project's user, scoped to the project; its password reset first if
        Keystone no longer takes the derived one."""
        password = self._password(project_id)
        auth = v3.Password(auth_url=self.auth_url, user_id=user_id, password=password,
                           project_id=project_id)
        sess = ks_session.Session(auth=auth, timeout=30)
        try:
            sess.get_token()
        except ks_exc.Unauthorized:
            self._call("resetting the project user's password", "PATCH", f"/users/{user_id}",
                       json={"user": {"password": password}})
            sess = ks_session.Session(auth=v3.Password(
                auth_url=self.auth_url, user_id=user_id, password=password, project_id=project_id),
                timeout=30)
            try:
                sess.get_token()
            except ks_exc.ClientException as e:
                raise IdentityError(f"Keystone: the project's user cannot log in: {_describe(e)}") \
                    from None
        except ks_exc.ClientException as e:
            raise IdentityError(f"Keystone: logging in as the project's user failed: "
                                f"{_describe(e)}") from None
        return sess

    # -- the catalog as a project sees it --------------------------------------------------------
    def catalog(self, project_id: str, interface: str = "public") -> dict[str, tuple[str, str]]:
        """{service type: (URL with the project id filled in, region)} of the catalog's
        `interface` endpoints, for the objects handed to a project's cluster."""
        services = {s["id"]: s["type"] for s in self._call(
            "listing services", "GET", "/services").json()["services"]}
        out: dict[str, tuple[str, str]] = {}
        for e in self._call("listing endpoints", "GET", "/endpoints",
                            params={"interface": interface}).json()["endpoints"]:
            kind = services.get(e["service_id"])
            if kind is None or kind in out or not e.get("enabled", True):
                continue
            url = e["url"]
            for placeholder in ("%(project_id)s", "$(project_id)s", "%(tenant_id)s",
                                "$(tenant_id)s"):
                url = url.replace(placeholder, project_id)
            out[kind] = (url, e.get("region_id") or e.get("region") or "")
        return out

    # -- credentials -----------------------------------------------------------------------------
    def create(self, project_id: str, cluster_uuid: str, rotation: int, access_rules: list[dict],
               ec2: bool) -> ClusterCredentials:
        """A new application credential (and EC2 credentials) for the cluster's rotation; one of
        the same name left by an interrupted attempt is replaced (its secret was never stored)."""
        if not access_rules:
            raise IdentityError("a cluster credential needs access rules; an unrestricted one is "
                                "never made")
        user_id = self.project_user(project_id)
        sess = self._user_session(project_id, user_id)
        name = credential_name(cluster_uuid, rotation)
        base = f"/users/{user_id}/application_credentials"
        old = self._call("finding the cluster's credential", "GET", base, sess=sess,
                         params={"name": name}).json()["application_credentials"]
        for cred in old:
            self._call("removing an unfinished credential", "DELETE", f"{base}/{cred['id']}",
                       sess=sess, ok=(204, 404))
        body = {"application_credential": {
            "name": name, "description": f"Teapot cluster {cluster_uuid}: storage plugins",
            "roles": [{"name": MEMBER}], "unrestricted": False, "access_rules": access_rules}}
        made = self._call("creating the cluster's application credential", "POST", base,
                          sess=sess, json=body).json()["application_credential"]
        access = secret = None
        if ec2:
            access, secret = ec2_access(cluster_uuid, rotation), pysecrets.token_hex(20)
            cred_id = hashlib.sha256(access.encode()).hexdigest()
            self._call("removing unfinished EC2 credentials", "DELETE", f"/credentials/{cred_id}",
                       ok=(204, 404))
            blob = json.dumps({"access": access, "secret": secret, "trust_id": None,
                               "app_cred_id": made["id"]})
            self._call("creating the cluster's EC2 credentials", "POST", "/credentials",
                       json={"credential": {"type": "ec2", "user_id": user_id,
                                            "project_id": project_id, "blob": blob}})
        return ClusterCredentials(user_id, made["id"], made["secret"], access, secret)

    def delete(self, user_id: str, application_credential_id: str | None,
               ec2: str | None = None) -> None:
        """Remove a credential and its EC2 credentials; what is already gone is fine."""
        if ec2:
            cred_id = hashlib.sha256(ec2.encode()).hexdigest()
            self._call("deleting EC2 credentials", "DELETE", f"/credentials/{cred_id}", ok=(204, 404))
        if application_credential_id:
            self._call("deleting an application credential", "DELETE",
                       f"/users/{user_id}/application_credentials/{application_credential_id}",
                       ok=(204, 404))

    def delete_cluster(self, project_id: str, cluster_uuid: str) -> None:
        """Every credential of the cluster, of any rotation (also ones never recorded)."""
        name = USER_PREFIX + project_id
        found = self._call("finding the project's user", "GET", "/users",
                           params={"name": name, "domain_id": self.domain}).json()["users"]
        if not found:
            return
        user_id = found[0]["id"]
        prefix = credential_name(cluster_uuid, 0)[:-1]
        creds = self._call("listing the project user's credentials", "GET",
                           f"/users/{user_id}/application_credentials").json()
        for cred in creds["application_credentials"]:
            if cred["name"].startswith(prefix):
                self.delete(user_id, cred["id"])
        ec2s = self._call("listing EC2 credentials", "GET", "/credentials",
                          params={"user_id": user_id, "type": "ec2"}).json()["credentials"]
        for cred in ec2s:
            blob = json.loads(cred["blob"]) if isinstance(cred.get("blob"), str) else {}
            if blob.get("app_cred_id") and not self._exists(user_id, blob["app_cred_id"]):
                self._call("deleting EC2 credentials", "DELETE", f"/credentials/{cred['id']}",
                           ok=(204, 404))

    def _exists(self, user_id: str, application_credential_id: str) -> bool:
        resp = self._call("looking up an application credential", "GET",
                          f"/users/{user_id}/application_credentials/{application_credential_id}",
                          ok=(200, 404))
        return resp.status_code == 200

    # -- bucket credentials ----------------------------------------------------------------------
    def _bucket_credentials(self, user_id: str, application_credential_id: str,
                            cluster_uuid: str) -> list[dict]:
        """{access, name, created_at, id} of the cluster's bucket credentials (its current
        application credential's), oldest first; secrets are left out."""
        # log=False here and below: keystoneauth logs bodies at DEBUG, and blobs hold secrets
        found = self._call("listing EC2 credentials", "GET", "/credentials", log=False,
                           params={"user_id": user_id, "type": "ec2"}).json()["credentials"]
        out = []
        for cred in found:
            blob = _blob(cred)
            if (blob.get("teapot_bucket") == cluster_uuid
                    and blob.get("app_cred_id") == application_credential_id and blob.get("access")):
                out.append({"access": blob["access"], "name": blob.get("name") or "",
                            "created_at": blob.get("created_at") or "", "id": cred["id"]})
        return sorted(out, key=lambda c: (c["created_at"], c["access"]))

    def bucket_credentials(self, user_id: str, application_credential_id: str,
                           cluster_uuid: str) -> list[dict]:
        return [{k: c[k] for k in ("access", "name", "created_at")}
                for c in self._bucket_credentials(user_id, application_credential_id,
                                                  cluster_uuid)]

    def create_bucket_credential(self, project_id: str, user_id: str,
                                 application_credential_id: str, cluster_uuid: str,
                                 name: str = "") -> dict:
        """A new EC2 credential of the project's user for the cluster: {access, secret, name,
        created_at}. TooMany when the cluster holds MAX_BUCKET_CREDENTIALS already."""
        held = self._bucket_credentials(user_id, application_credential_id, cluster_uuid)
        if len(held) >= MAX_BUCKET_CREDENTIALS:
            raise TooMany(f"the cluster holds {len(held)} bucket credentials, as many as it may "
                          f"({MAX_BUCKET_CREDENTIALS}); delete one first")
        access, secret = pysecrets.token_hex(16), pysecrets.token_hex(20)
        created = datetime.now(UTC).replace(microsecond=0).isoformat()
        blob = json.dumps({"access": access, "secret": secret, "trust_id": None,
                           "app_cred_id": application_credential_id,
                           "teapot_bucket": cluster_uuid, "name": name, "created_at": created})
        self._call("creating bucket credentials", "POST", "/credentials", log=False,
                   json={"credential": {"type": "ec2", "user_id": user_id,
                                        "project_id": project_id, "blob": blob}})
        return {"access": access, "secret": secret, "name": name, "created_at": created}

    def delete_bucket_credential(self, user_id: str, application_credential_id: str,
                                 cluster_uuid: str, access: str) -> bool:
        """Delete one of the cluster's bucket credentials; False when it has no such one."""
        cred_id = hashlib.sha256(access.encode()).hexdigest()
        resp = self._call("looking up bucket credentials", "GET", f"/credentials/{cred_id}",
                          ok=(200, 404), log=False)
        if resp.status_code == 404:
            return False
        cred = resp.json()["credential"]
        blob = _blob(cred)
        if (cred.get("user_id") != user_id or cred.get("type") != "ec2"
                or blob.get("teapot_bucket") != cluster_uuid or blob.get("access") != access
                or blob.get("app_cred_id") != application_credential_id):
            return False
        self._call("deleting bucket credentials", "DELETE", f"/credentials/{cred_id}",
                   ok=(204, 404))
        return True


def _blob(cred: dict) -> dict:
    try:
        blob = json.loads(cred["blob"]) if isinstance(cred.get("blob"), str) else {}
    except ValueError:
        return {}
    return blob if isinstance(blob, dict) else {}
