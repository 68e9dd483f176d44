"""Keyset pagination: a page of any list query, sorted by one column with the id as tie-break.

The marker is the last object of the previous page; the next page starts after its (sort value, id),
so pages never repeat or skip an object however many are created meanwhile. Nullable columns are
sorted through COALESCE so that every row has a comparable value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select


class MarkerNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Page:
    limit: int
    sort_key: Any  # an SQL expression
    tiebreak: Any  # a unique column
    descending: bool = False
    marker: Any = None  # an SQL condition that selects the marker row, or None for the first page


def apply(session: Session, query: Select, page: Page) -> Select:
    """`query` limited to one page (plus one row, which tells whether another page follows)."""
    key, tie = page.sort_key, page.tiebreak
    if page.marker is not None:
        found = session.execute(query.with_only_columns(key, tie).where(page.marker).limit(1)).first()
        if found is None:
            raise MarkerNotFound()
        value, ident = found
        if page.descending:
            query = query.where(or_(key < value, and_(key == value, tie < ident)))
        else:
            query = query.where(or_(key > value, and_(key == value, tie > ident)))
    order = (key.desc(), tie.desc()) if page.descending else (key.asc(), tie.asc())
    return query.order_by(None).order_by(*order).limit(page.limit + 1)
