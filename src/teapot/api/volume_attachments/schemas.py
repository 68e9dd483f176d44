"""/v1/clusters/{cluster}/volume_attachments request and response bodies."""

from __future__ import annotations

from teapot.api.schema import BOOLEAN, IDENT, LINKS, UUID, array, integer, nullable, obj, string

CREATE = obj({"volume_id": UUID, "host": IDENT}, ("volume_id", "host"))

SECRET_REF = obj({"namespace": string(253), "name": string(253), "key": string(253)},
                 ("namespace", "name", "key"),
                 description="where the cluster's hosts find the Ceph user's key (an add-on "
                             "Secret); the key itself is never in a response")
RBD_DATA = obj({
    "name": string(512, description="pool/image"),
    "hosts": array(string(255), 16), "ports": array(string(16), 16),
    "cluster_name": string(64), "auth_enabled": BOOLEAN,
    "auth_username": string(128, description="the project's own Ceph user (client.<this>)"),
    "volume_id": UUID, "discard": BOOLEAN, "access_mode": {"type": "string", "enum": ["rw", "ro"]},
    "encrypted": BOOLEAN, "qos_specs": nullable({"type": "object"}),
    "secret_ref": SECRET_REF,
}, ("name", "auth_username", "secret_ref"))
CONNECTION_INFO = obj({"driver_volume_type": {"type": "string", "enum": ["rbd"]},
                       "data": RBD_DATA}, ("driver_volume_type", "data"))
HOST = obj({"uuid": UUID, "name": string(253), "node_uuid": UUID}, ("uuid", "name", "node_uuid"))
ATTACHMENT = obj({
    "id": UUID, "volume_id": UUID, "cluster_uuid": UUID, "host": HOST,
    "status": string(64), "connection_info": nullable(CONNECTION_INFO), "links": LINKS,
}, ("id", "volume_id", "cluster_uuid", "host", "status", "links"))
ATTACHMENT_LIST = obj({"volume_attachments": array(ATTACHMENT, 10_000),
                       "count": integer(0, 10_000)}, ("volume_attachments",))
