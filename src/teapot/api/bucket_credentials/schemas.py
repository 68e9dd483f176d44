"""/v1/clusters/{cluster}/bucket_credentials request and response bodies."""

from __future__ import annotations

from teapot.api.schema import UUID, array, integer, obj, string

ACCESS = string(64, 1, r"^[0-9a-f]+$", description="the EC2 access key")
NAME = string(255, description="what the credential is for (the COSI driver: the access's name)")
CREATED_AT = {"type": "string", "format": "date-time"}

CREATE = obj({"name": NAME})
CREATED = obj({"access": ACCESS,
               "secret": string(64, 1, r"^[0-9a-f]+$",
                                description="the EC2 secret key, shown in this response only"),
               "name": NAME, "created_at": CREATED_AT, "cluster_uuid": UUID},
              ("access", "secret", "created_at"))
CREDENTIAL = obj({"access": ACCESS, "name": NAME, "created_at": CREATED_AT},
                 ("access", "created_at"))
CREDENTIAL_LIST = obj({"bucket_credentials": array(CREDENTIAL, 1000),
                       "count": integer(0, 1000)}, ("bucket_credentials", "count"))
