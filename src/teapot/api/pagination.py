"""Lists page and sort as Magnum's do: `limit` (at most `[api] max_limit`), `marker` (the last object
of the previous page), `sort_key` (one of the list's keys), `sort_dir` (asc or desc), and a `next` link
in the body while more objects follow."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request

from teapot.api import schema
from teapot.db import pagination as dbpage


@dataclass(frozen=True)
class Paging:
    """What one list allows: its sort keys (name → SQL expression) and how its marker is found."""

    sort_keys: dict  # public name → SQL expression
    default_key: str
    tiebreak: object  # unique column
    marker_column: object  # the column a marker is compared with (uuid, or name)
    marker_schema: dict

    def query_schema(self) -> dict[str, dict]:
        return {
            "limit": schema.integer(1, schema.INT32_MAX,
                                    "objects per page (at most the API's max_limit)"),
            "marker": {**self.marker_schema, "description": "the last object of the previous page"},
            "sort_key": {"type": "string", "enum": sorted(self.sort_keys)},
            "sort_dir": {"type": "string", "enum": ["asc", "desc"]},
        }

    def page(self, request: Request) -> dbpage.Page:
        q = request.state.query
        limit = min(q.get("limit", request.app.state.max_limit), request.app.state.max_limit)
        marker = q.get("marker")
        return dbpage.Page(
            limit=limit, sort_key=self.sort_keys[q.get("sort_key", self.default_key)],
            tiebreak=self.tiebreak, descending=q.get("sort_dir", "asc") == "desc",
            marker=(self.marker_column == marker) if marker is not None else None)


def finish(request: Request, rows: list, page: dbpage.Page, marker_of) -> tuple[list, str | None]:
    """The page's rows and the link to the next page (None on the last)."""
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    params = {k: v for k, v in request.query_params.items() if k != "marker"}
    params.update(limit=page.limit, marker=marker_of(rows[-1]))
    base = request.app.state.base_url(request)
    return rows, f"{base}{request.url.path}?{urlencode(params)}"
