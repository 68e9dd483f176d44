"""Microversions, as Magnum has them: `OpenStack-API-Version: container-infra 1.x`."""

from __future__ import annotations

from starlette.requests import Request

from teapot.api.errors import APIError

SERVICE = "container-infra"
MIN = (1, 1)
MAX = (1, 14)


def _text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def requested(request: Request) -> tuple[int, int]:
    """The version the client asked for (the minimum when it asked for none)."""
    header = request.headers.get("openstack-api-version", "")
    if not header:
        return MIN
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != SERVICE:
        raise APIError(400, f"OpenStack-API-Version must be '{SERVICE} <version>', not {header!r}")
    if parts[1] == "latest":
        return MAX
    try:
        major, minor = (int(x) for x in parts[1].split("."))
    except ValueError:
        raise APIError(400, f"invalid microversion {parts[1]!r}") from None
    if not MIN <= (major, minor) <= MAX:
        raise APIError(406, f"version {parts[1]} is not supported: {_text(MIN)} to {_text(MAX)}")
    return major, minor


def headers(version: tuple[int, int]) -> dict[str, str]:
    return {
        "OpenStack-API-Minimum-Version": f"{SERVICE} {_text(MIN)}",
        "OpenStack-API-Maximum-Version": f"{SERVICE} {_text(MAX)}",
        "OpenStack-API-Version": f"{SERVICE} {_text(version)}",
        "Vary": "OpenStack-API-Version",
    }
