"""What a host may look like: Metal³ BareMetalHost's spec, checked against the upstream CRD schema,
plus the checks Kubernetes leaves to the baremetal-operator (BMC scheme, MAC, image)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import os_traits
import yaml

from teapot.resources.errors import ValidationError

CRD_FILE = Path(__file__).parent / "schemas" / "metal3.io_baremetalhosts.yaml"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CUSTOM_TRAIT_RE = re.compile(r"^CUSTOM_[A-Z0-9_]+$")  # as Placement accepts them
# BareMetalHosts have no traits: a host with trait T carries the label <prefix>T: "true".
TRAIT_LABEL_PREFIX = "trait.teapot.openstack.org/"
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
CHECKSUM_LENGTHS = {"md5": 32, "sha256": 64, "sha512": 128}

# BMC address schemes Teapot drives, and the Ironic hardware type and protocol for each.
BMC_SCHEMES = {
    "redfish": ("redfish", "https"),
    "redfish+http": ("redfish", "http"),
    "redfish+https": ("redfish", "https"),
    "ipmi": ("ipmi", None),
}


@cache
def _crd_schema() -> dict:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return version["schema"]["openAPIV3Schema"]


def _closed(schema: Any) -> Any:
    """The schema with unknown fields rejected where it lists the known ones.

    Kubernetes prunes unknown fields silently; an API that is not Kubernetes says which one is wrong.
    """
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["type"] = ["integer", "string"]
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema says it (a type that admits null)."""
    if isinstance(schema, dict):
        out = {k: _json_schema(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema


@cache
def spec_schema() -> dict:
    """A BareMetalHost's spec as a closed JSON schema: what the hosts API declares and serves."""
    return _json_schema(_closed(copy.deepcopy(_crd_schema()["properties"]["spec"])))


@cache
def _spec_validator() -> jsonschema.Draft7Validator:
    spec = copy.deepcopy(_crd_schema()["properties"]["spec"])
    return jsonschema.Draft7Validator(_closed(spec))


def _path(prefix: str, error: jsonschema.ValidationError) -> str:
    parts = [prefix, *(str(p) for p in error.absolute_path)]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            parts.append(extra[0])
            return ".".join(parts)
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            parts.append(missing.group(1))
    return ".".join(parts)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown field"
    if error.validator == "required":
        return "is required"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "pattern" and list(error.absolute_path)[-1:] == ["bootMACAddress"]:
        return f"{error.instance!r} is not a MAC address (aa:bb:cc:dd:ee:ff)"
    if error.validator == "type":
        return f"must be of type {error.validator_value}, not {type(error.instance).__name__}"
    return error.message


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError("name", "is required")
    if len(name) > 253 or not NAME_RE.match(name):
        raise ValidationError(
            "name", f"{name!r} is not a valid name (lower case letters, digits, '-' and '.', at most 253)"
        )
    return name


@dataclass(frozen=True)
class BMCAddress:
    driver: str  # Ironic hardware type
    scheme: str
    host: str
    port: int | None
    protocol: str | None  # http or https for Redfish
    system_id: str  # Redfish system path

    @property
    def redfish_address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        port = f":{self.port}" if self.port else ""
        return f"{self.protocol}://{host}{port}"


@cache
def _standard_traits() -> frozenset[str]:
    return frozenset(os_traits.get_traits())


def validate_traits(value: Any, field: str = "traits") -> list[str]:
    """Hardware traits as Placement and Ironic know them: a standard os-traits name or CUSTOM_*."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(field, "must be a list of trait names")
    for i, trait in enumerate(value):
        if not isinstance(trait, str):
            raise ValidationError(f"{field}[{i}]", "must be a string")
        if len(trait) > 255 or not (trait in _standard_traits() or CUSTOM_TRAIT_RE.match(trait)):
            raise ValidationError(f"{field}[{i}]", f"{trait!r} is neither a standard trait (os-traits) "
                                                   f"nor a custom one (CUSTOM_ and A-Z, 0-9, _)")
    return sorted(set(value))


def parse_bmc_address(address: str, field: str = "spec.bmc.address") -> BMCAddress:
    if "://" not in address:
        raise ValidationError(field, f"{address!r} is not a URL with a scheme such as redfish://")
    parts = urlsplit(address)
    if parts.scheme not in BMC_SCHEMES:
        raise ValidationError(
            field, f"unknown BMC scheme {parts.scheme!r}; supported: {', '.join(BMC_SCHEMES)}"
        )
    driver, protocol = BMC_SCHEMES[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(field, f"{address!r} has an invalid port") from None
    if not parts.hostname:
        raise ValidationError(field, f"{address!r} names no host")
    system_id = parts.path.rstrip("/")
    if driver == "redfish" and not system_id:
        raise ValidationError(
            field, "a Redfish address needs the system's path, e.g. redfish://bmc/redfish/v1/Systems/1"
        )
    return BMCAddress(driver, parts.scheme, parts.hostname, port, protocol, system_id)


def validate_spec(spec: Any) -> dict:
    """Check a BareMetalHost spec; return it (a copy). Raises ValidationError naming the field."""
    if not isinstance(spec, dict):
        raise ValidationError("spec", "must be an object")
    errors = sorted(_spec_validator().iter_errors(spec), key=lambda e: list(e.absolute_path))
    if errors:
        raise ValidationError(_path("spec", errors[0]), _message(errors[0]))
    spec = copy.deepcopy(spec)
    bmc = spec.get("bmc")
    if not bmc:
        raise ValidationError("spec.bmc", "is required")
    parse_bmc_address(bmc["address"])
    mac = spec.get("bootMACAddress")
    if mac is None:
        raise ValidationError("spec.bootMACAddress", "is required: Ironic identifies the host's NIC by it")
    if not MAC_RE.match(mac):
        raise ValidationError("spec.bootMACAddress", f"{mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    spec["bootMACAddress"] = mac.lower()
    image = spec.get("image")
    if image:
        validate_image(image)
    return spec


def validate_image(image: dict, field: str = "spec.image") -> None:
    url = urlsplit(image["url"])
    if url.scheme not in ("http", "https", "file", "oci"):
        raise ValidationError(f"{field}.url", f"{image['url']!r} is not an http(s), file or oci URL")
    fmt = image.get("format")
    checksum = image.get("checksum")
    if not checksum and fmt != "live-iso" and url.scheme != "oci":
        raise ValidationError(f"{field}.checksum", "is required for this image format")
    kind = image.get("checksumType")
    if checksum and kind in CHECKSUM_LENGTHS and not re.fullmatch(
        rf"[0-9a-fA-F]{{{CHECKSUM_LENGTHS[kind]}}}", checksum
    ) and not checksum.startswith(("http://", "https://")):
        raise ValidationError(f"{field}.checksum", f"is not a {kind} digest ({CHECKSUM_LENGTHS[kind]} hex digits)")


def validate_credentials(creds: Any, field: str = "bmcCredentials") -> tuple[str, str]:
    if not isinstance(creds, dict):
        raise ValidationError(field, "is required: an object with username and password")
    unknown = set(creds) - {"username", "password"}
    if unknown:
        raise ValidationError(f"{field}.{sorted(unknown)[0]}", "unknown field")
    for key in ("username", "password"):
        value = creds.get(key)
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{field}.{key}", "is required")
    return creds["username"], creds["password"]


def _secret_data(secret: dict, key: str, where: str) -> str | None:
    import base64
    import binascii

    string_data = secret.get("stringData") or {}
    data = secret.get("data") or {}
    for field, values in (("stringData", string_data), ("data", data)):
        if key in values and not isinstance(values[key], str):
            raise ValidationError(f"{where}.{field}.{key}", "must be a string (quote it in YAML)")
    if key in string_data:
        return string_data[key]
    if key in data:
        try:
            return base64.b64decode(data[key], validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ValidationError(f"{where}.data.{key}", "is not valid base64") from None
    return None


class _ManifestLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: `52:54:00:12:34:56` is a string, not a base-60 integer."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+)$"),
    list("-+0123456789"))
_ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_manifests(text: str) -> list:
    """Parse multi-document YAML the way kubectl does (no YAML 1.1 base-60 numbers)."""
    try:
        return list(yaml.load_all(text, Loader=_ManifestLoader))
    except yaml.YAMLError as e:
        raise ValidationError("", f"not valid YAML: {e}") from None


def hosts_from_manifests(docs: list) -> list[dict]:
    """Turn BareMetalHost manifests and their Secrets (as `kubectl apply` takes them) into host
    requests for the API. Raises ValidationError naming the document and field."""
    secrets: dict[str, dict] = {}
    hosts: list[tuple[int, dict]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        where = f"document {i + 1}"
        if not isinstance(doc, dict):
            raise ValidationError(where, "is not a mapping")
        kind, api = doc.get("kind"), doc.get("apiVersion")
        if kind == "Secret" and api == "v1":
            name = (doc.get("metadata") or {}).get("name")
            if not name:
                raise ValidationError(f"{where}.metadata.name", "is required")
            secrets[name] = doc
        elif kind == "BareMetalHost" and api == "metal3.io/v1alpha1":
            hosts.append((i, doc))
        else:
            raise ValidationError(f"{where}.kind", f"{api}/{kind} is neither a metal3.io/v1alpha1 "
                                                   "BareMetalHost nor a v1 Secret")
    requests = []
    for i, doc in hosts:
        meta = doc.get("metadata") or {}
        name = meta.get("name")
        where = f"BareMetalHost {name or f'in document {i + 1}'}"
        try:
            validate_name(name)
            spec = validate_spec(doc.get("spec"))
        except ValidationError as e:
            raise ValidationError(f"{where}: {e.field}", e.message) from None
        cred_name = spec["bmc"]["credentialsName"]
        secret = secrets.get(cred_name)
        if secret is None:
            raise ValidationError(f"{where}: spec.bmc.credentialsName",
                                  f"the Secret {cred_name!r} with the BMC credentials is not in the file")
        username = _secret_data(secret, "username", f"Secret {cred_name}")
        password = _secret_data(secret, "password", f"Secret {cred_name}")
        if not username or not password:
            raise ValidationError(f"Secret {cred_name}", "needs both username and password")
        labels = dict(meta.get("labels") or {})
        traits = [k.removeprefix(TRAIT_LABEL_PREFIX) for k, v in labels.items()
                  if k.startswith(TRAIT_LABEL_PREFIX) and v == "true"]
        for trait in traits:
            del labels[TRAIT_LABEL_PREFIX + trait]
        try:
            traits = validate_traits(traits, f"metadata.labels[{TRAIT_LABEL_PREFIX}...]")
        except ValidationError as e:
            raise ValidationError(f"{where}: {e.field}", e.message) from None
        request = {"name": name, "labels": labels, "traits": traits, "spec": spec,
                   "bmcCredentials": {"username": username, "password": password}}
        if spec.get("userData"):
            ud_name = spec["userData"].get("name")
            ud_secret = secrets.get(ud_name)
            user_data = _secret_data(ud_secret, "userData", f"Secret {ud_name}") if ud_secret else None
            if user_data is None:
                raise ValidationError(f"{where}: spec.userData",
                                      f"the Secret {ud_name!r} with key userData is not in the file")
            request["userData"] = user_data
        requests.append(request)
    return requests
