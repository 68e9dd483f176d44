"""Validation of the objects Teapot puts into tenant clusters: built-in kinds strictly against the
Kubernetes schemas (kubernetes-validate), COSI's classes against their CRDs' schemas."""

from __future__ import annotations

import jsonschema
import kubernetes_validate

# The spec schemas of the two classes, after the upstream CRDs of objectstorage.k8s.io/v1alpha2
# (kubernetes-sigs/container-object-storage-interface, client/config/crd, early 2026), with
# unknown fields refused as a strict API server would.
_DRIVER_NAME = {"type": "string", "minLength": 1, "maxLength": 63,
                "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9\-\.]{0,61}[a-zA-Z0-9])?$"}
_PARAMETERS = {"type": "object", "minProperties": 1, "maxProperties": 512,
               "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"],
         "properties": {"name": {"type": "string"}, "labels": {"type": "object"},
                        "annotations": {"type": "object"}}, "additionalProperties": False}
SCHEMAS = {
    "BucketClass": {"driverName": _DRIVER_NAME, "parameters": _PARAMETERS,
                    "deletionPolicy": {"type": "string", "enum": ["Retain", "Delete"]}},
    "BucketAccessClass": {
        "driverName": _DRIVER_NAME, "parameters": _PARAMETERS,
        "authenticationType": {"type": "string", "enum": ["Key", "ServiceAccount"]},
        "multiBucketAccess": {"type": "string", "enum": ["SingleBucket", "MultipleBuckets"]},
        "disallowedBucketAccessModes": {
            "type": "array", "minItems": 1, "maxItems": 3, "uniqueItems": True,
            "items": {"type": "string", "enum": ["ReadWrite", "ReadOnly", "WriteOnly"]}}},
}
REQUIRED = {"BucketClass": ["driverName", "deletionPolicy"],
            "BucketAccessClass": ["driverName", "authenticationType"]}


def cosi_schema(kind: str) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": False,
            "properties": {"apiVersion": {"const": "objectstorage.k8s.io/v1alpha2"},
                           "kind": {"const": kind}, "metadata": _META,
                           "spec": {"type": "object", "properties": SCHEMAS[kind],
                                    "required": REQUIRED[kind], "additionalProperties": False}}}



def validate(obj: dict, version: str = "1.31") -> None:
    """Raises kubernetes_validate.ValidationError or jsonschema.ValidationError."""
    if obj["apiVersion"].startswith("objectstorage.k8s.io/"):
        jsonschema.validate(obj, cosi_schema(obj["kind"]))
    else:
        kubernetes_validate.validate(obj, version, strict=True)
