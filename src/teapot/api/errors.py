"""OpenStack API-SIG error bodies (the shape Magnum uses): {"errors": [{...}]}."""

from __future__ import annotations

from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse


class APIError(Exception):
    def __init__(self, status: int, detail: str, code: str | None = None):
        self.status = status
        self.detail = detail
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
        super().__init__(detail)


def error_response(request: Request, status: int, detail: str, code: str | None = None) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body = {"errors": [{
        "request_id": getattr(request.state, "request_id", ""),
        "code": f"teapot.{code or phrase.lower().replace(' ', '_')}",
        "status": status,
        # As Magnum does: clients (python-magnumclient, `openstack coe`) show the title.
        "title": detail,
        "detail": detail,
        "links": [],
    }]}
    return JSONResponse(body, status_code=status,
                        headers={"X-OpenStack-Request-Id": getattr(request.state, "request_id", "")})
