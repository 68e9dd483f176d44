"""JSON schemas of requests and responses: the building blocks, and validation that names the field.

Every API declares the body of each request and response once, from these types (as Nova's and
Ironic's APIs do); the validator turns the first problem into a ValidationError that names the field
(`labels.foo`, `nodes_to_remove[2]`) before any handler code runs. The same schemas make the served
OpenAPI document and drive the fuzz tests.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from teapot.resources.errors import ValidationError

# Integers stored in the database fit a 32-bit signed column on every back-end.
INT32_MAX = 2**31 - 1
# Text without control characters (NUL, newline, ...): names, descriptions, label values.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


# -- types -----------------------------------------------------------------------------------------
def string(max_length: int = 255, min_length: int = 0, pattern: str | None = PRINTABLE,
           description: str | None = None, **extra) -> dict:
    out: dict[str, Any] = {"type": "string", "maxLength": max_length, **extra}
    if min_length:
        out["minLength"] = min_length
    if pattern:
        out["pattern"] = pattern
    if description:
        out["description"] = description
        if pattern:
            out["x-hint"] = description  # how a refusal of the pattern explains it
    return out


def integer(minimum: int = 0, maximum: int = INT32_MAX, description: str | None = None) -> dict:
    out: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if description:
        out["description"] = description
    return out


def nullable(schema: dict) -> dict:
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        return schema
    if isinstance(kind, str):
        out = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict, required: tuple[str, ...] = (), closed: bool = True,
        description: str | None = None) -> dict:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


def array(items: dict, max_items: int = 1000, **extra) -> dict:
    return {"type": "array", "items": items, "maxItems": max_items, **extra}


UUID = {"type": "string", "format": "uuid",
        "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        "maxLength": 36}
BOOLEAN = {"type": "boolean"}
TIMESTAMP = nullable({"type": "string", "format": "date-time"})
# Magnum's names of clusters and node groups: a letter, then letters, digits, '_', '.', '-'.
MAGNUM_NAME = string(242, 1, r"^[a-zA-Z][a-zA-Z0-9_.-]*$",
                     "a letter, then letters, digits, '_', '.' or '-' (at most 242)")
# Names that name (templates, host classes): printable, not only spaces.
NAME = string(255, 1, r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f ][^\x00-\x1f\x7f]*$")
# Labels are a flat map of strings, as Magnum's and Kubernetes' are.
LABELS = {"type": "object", "maxProperties": 256, "propertyNames": string(253, 1),
          "additionalProperties": string(1024), "description": "a flat map of strings"}
LINKS = array(obj({"href": {"type": "string"}, "rel": {"type": "string"}}, ("href", "rel")), 4)
IDENT = string(255, 1, description="uuid or name")

ERROR = obj({"errors": array(obj({
    "request_id": {"type": "string"}, "code": {"type": "string"}, "status": {"type": "integer"},
    "title": {"type": "string"}, "detail": {"type": "string"}, "links": {"type": "array"},
}, ("status", "title", "detail")), 10, minItems=1)}, ("errors",))


# -- validation ------------------------------------------------------------------------------------
def validator(schema: dict) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=None)


def _field(prefix: str, error: jsonschema.ValidationError) -> str:
    out = prefix
    for part in error.absolute_path:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else str(part))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            return f"{out}.{extra[0]}" if out else extra[0]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            return f"{out}.{missing[0]}" if out else missing[0]
    return out


_TYPE_NAMES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
               "boolean": "true or false", "number": "a number", "null": "null"}


def _message(error: jsonschema.ValidationError) -> str:
    kind, value, schema = error.validator, error.validator_value, error.schema
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        return ("unknown field; expected some of " + ", ".join(known)) if known else "unknown field"
    if kind == "required":
        return "is required"
    if kind == "type":
        names = [value] if isinstance(value, str) else value
        return "must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    if kind == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, value))}"
    if kind == "const":
        return f"must be {value!r}"
    if kind in ("minimum", "maximum"):
        return f"must be an integer from {schema.get('minimum', '-inf')} to {schema.get('maximum', 'inf')}"
    if kind == "maxLength":
        return f"must be at most {value} characters long"
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters long"
    if kind == "pattern":
        what = schema.get("x-hint") or f"must match {value}"
        if value == PRINTABLE:
            what = "must not contain control characters"
        shown = error.instance if len(str(error.instance)) <= 60 else str(error.instance)[:57] + "..."
        return f"{shown!r} is not valid: {what}"
    if kind == "maxItems":
        return f"must have at most {value} items"
    if kind == "minItems":
        return f"must have at least {value} item{'s' if value != 1 else ''}"
    if kind == "maxProperties":
        return f"must have at most {value} entries"
    if kind == "uniqueItems":
        return "must not repeat items"
    if kind in ("anyOf", "oneOf"):
        return "is not valid here: " + (schema.get("description") or error.message)
    return error.message


def _depth(error: jsonschema.ValidationError) -> tuple:
    # The most specific problem first; among equals, the first in document order.
    return (-len(error.absolute_path), [str(p) for p in error.absolute_path])


def check(v: Draft202012Validator, instance: Any, prefix: str = "") -> Any:
    """Validate; on failure raise ValidationError naming the field of the first problem."""
    errors = list(v.iter_errors(instance))
    if errors:
        error = min(errors, key=_depth)
        raise ValidationError(_field(prefix, error), _message(error))
    return instance
