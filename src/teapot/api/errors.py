"""OpenStack API-SIG error bodies (the shape Magnum uses): {"errors": [{...}]}."""

from __future__ import annotations

from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import JSONResponse


class APIError(Exception):
    def __init__(self, status: int, detail: str, code: str | None = None,
                 headers: dict[str, str] | None = None):
        self.status = status
        self.detail = detail
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
        self.headers = headers or {}
        super().__init__(detail)


class Unavailable(APIError):
    """A service Teapot depends on cannot answer now: 503 naming it, with Retry-After (as
    keystonemiddleware answers when Keystone is down). Never a 500: the request was not wrong."""

    def __init__(self, service: str, why: str, retry_after: int = 5):
        super().__init__(503, f"{service} is unavailable ({why}); retry in {retry_after} s",
                         "service_unavailable", {"Retry-After": str(retry_after)})
        self.service, self.why, self.retry_after = service, why, retry_after


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
