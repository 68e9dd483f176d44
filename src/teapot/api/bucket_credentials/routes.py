"""/v1/clusters/{cluster}/bucket_credentials: S3 credentials of a cluster, one per bucket access.

Keystone refuses EC2 credentials to application credentials, so the COSI driver in a cluster
cannot make per-access S3 keys with the cluster's credential. Teapot makes them on its behalf:
EC2 credentials of the project's Teapot user, tied to the cluster's current application
credential (drivers/identity.py), at most MAX_BUCKET_CREDENTIALS per cluster. The secret is in the
creation's response only (as in Keystone's own EC2 API) and never logged; listing shows access keys.

Members of the cluster's project create and delete, readers list; the cluster's own application
credential reaches exactly these paths of its own cluster (its access rules). Another project's
cluster is a 404, as is an access key that is not one of this cluster's bucket credentials. Only a
cluster that asked for object storage has them (409 otherwise), and only once its credentials are
made (409 before).
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import Response

from teapot.api.bucket_credentials import schemas
from teapot.api.common import FastJSONResponse, authorize, identity
from teapot.api.errors import APIError
from teapot.api.operations import Operation, body
from teapot.db import clusters as cdb
from teapot.drivers.identity import MAX_BUCKET_CREDENTIALS, IdentityError, TooMany
from teapot.resources import storage

LOG = logging.getLogger(__name__)
RULE = "teapot:bucket_credential"
_ACCESS = re.compile(r"[0-9a-f]{1,64}")


def _context(request: Request, rule: str) -> tuple[str, str, str, str, object]:
    """(cluster uuid, project id, the project user's id, the cluster's application credential
    id, the identity driver) of the caller's cluster, once the caller may `rule`."""
    project = identity(request).project_id
    if not project:
        raise APIError(403, "bucket credentials need a project-scoped token")
    with request.app.state.reader() as session:
        row = cdb.get_cluster(session, request.path_params["cluster"], project)
        authorize(request, f"{RULE}:{rule}", {"project_id": row.project_id})
        uuid, project_id, name = row.uuid, row.project_id, row.name
        kinds = tuple(row.attrs.get("storage_kinds") or ())
        creds = row.attrs.get("credentials") or {}
    if storage.OBJECT not in kinds:
        raise APIError(409, f"cluster {name} did not ask for object storage (label "
                            "object_storage_enabled)")
    if not creds.get("user_id") or not creds.get("application_credential_id"):
        raise APIError(409, f"cluster {name} has no storage credentials yet; try again later")
    driver = getattr(request.app.state, "identity", None)
    if driver is None:
        raise APIError(503, "bucket credentials are not configured on this cloud")
    return uuid, project_id, creds["user_id"], creds["application_credential_id"], driver


def _unavailable(e: IdentityError) -> APIError:
    return APIError(503, str(e))


def list_credentials(request: Request) -> Response:
    uuid, _, user_id, app_cred, driver = _context(request, "get_all")
    try:
        found = driver.bucket_credentials(user_id, app_cred, uuid)
    except IdentityError as e:
        raise _unavailable(e) from None
    return FastJSONResponse({"bucket_credentials": found, "count": len(found)})


def create_credential(request: Request) -> Response:
    name = (body(request) or {}).get("name") or ""
    uuid, project_id, user_id, app_cred, driver = _context(request, "create")
    try:
        made = driver.create_bucket_credential(project_id, user_id, app_cred, uuid, name)
    except TooMany as e:
        raise APIError(409, str(e)) from None
    except IdentityError as e:
        raise _unavailable(e) from None
    LOG.info("cluster %s: bucket credential %s made", uuid, made["access"])
    return FastJSONResponse({**made, "cluster_uuid": uuid}, status_code=201)


def delete_credential(request: Request) -> Response:
    access = request.path_params["access"]
    uuid, _, user_id, app_cred, driver = _context(request, "delete")
    try:
        gone = _ACCESS.fullmatch(access) is not None and driver.delete_bucket_credential(
            user_id, app_cred, uuid, access)
    except IdentityError as e:
        raise _unavailable(e) from None
    if not gone:
        raise APIError(404, f"bucket credential {access[:80]} not found")
    LOG.info("cluster %s: bucket credential %s deleted", uuid, access)
    return Response(status_code=204)


PATH = "/v1/clusters/{cluster}/bucket_credentials"
OPERATIONS = [
    Operation("GET", PATH, list_credentials,
              "List a cluster's bucket credentials (access keys, no secrets)",
              "bucket_credentials", {200: schemas.CREDENTIAL_LIST}, rule=f"{RULE}:get_all"),
    Operation("POST", PATH, create_credential,
              f"Make an S3 (EC2) credential for the cluster (at most {MAX_BUCKET_CREDENTIALS}); "
              "its secret is in this response only", "bucket_credentials",
              {201: schemas.CREATED}, body=schemas.CREATE, body_optional=True,
              rule=f"{RULE}:create"),
    Operation("DELETE", PATH + "/{access}", delete_credential,
              "Delete one of the cluster's bucket credentials", "bucket_credentials", {204: None},
              rule=f"{RULE}:delete"),
]
