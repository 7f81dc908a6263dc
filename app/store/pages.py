"""Keyset pages on (created_at, id), or (name, id): stable under inserts, no OFFSET scans.

A cursor is opaque to clients (base64 of the last row's key) and checked strictly: a cursor we
did not hand out, or one of another order, is the caller's mistake (``BadCursor``), never a
fault. A page is read forwards (``first`` rows after a cursor) or backwards (``last`` rows
before one: read in the reverse order, then turned round), in either direction of its order.

Example::

    >>> cursor = encode_cursor(datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
    ...                        "0b5a6b3e-3c2f-4a8e-9d51-6f2c1e8f7a10")
    >>> decode_cursor(cursor)[1]
    '0b5a6b3e-3c2f-4a8e-9d51-6f2c1e8f7a10'
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_

from app.store.models import ApiToken, Network, Node, Operation

T = TypeVar("T")


class BadCursor(ValueError):
    """The ``after`` cursor was not one we handed out."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next: bool
    total: int
    has_previous: bool = False  # known only for a page read backwards (or past a cursor)

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


NAME_PREFIX = "name:"  # a cursor of the (name, id) order


@dataclass(frozen=True)
class Sort:
    """A page's order: by creation time or by name (then id), ascending or descending."""

    by_name: bool = False
    descending: bool = False


@functools.lru_cache(maxsize=16384)  # a polled list encodes the same rows' cursors each time
def encode_cursor(created_at: datetime.datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def encode_name_cursor(name: str, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{NAME_PREFIX}{name}|{row_id}".encode()).decode()


def _decode(cursor: str) -> tuple[str, str]:
    try:
        key, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"{cursor!r} is not a valid cursor") from None
    return key, row_id


def decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    created, row_id = _decode(cursor)
    try:
        at = datetime.datetime.fromisoformat(created)
    except ValueError:
        raise BadCursor(f"{cursor!r} is not a valid cursor") from None
    if at.tzinfo is None:  # ours always carry their zone
        raise BadCursor(f"{cursor!r} is not a valid cursor")
    return at, row_id


def decode_name_cursor(cursor: str) -> tuple[str, str]:
    name, row_id = _decode(cursor)
    if not name.startswith(NAME_PREFIX):
        raise BadCursor(f"{cursor!r} is not a cursor of this order")
    return name.removeprefix(NAME_PREFIX), row_id


SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


Model = type[Network] | type[Node] | type[ApiToken] | type[Operation]


def seek(
    query: SelectT, model: Model, cursor: str | None, sort: Sort, backward: bool = False
) -> SelectT:
    """``query`` ordered by ``sort`` (reversed when reading ``backward``) and narrowed to the
    rows that come after ``cursor`` in that reading order."""
    column: Any = model.name if sort.by_name and model is Network else model.created_at
    descending = sort.descending != backward
    if cursor is not None:
        key: object
        if sort.by_name:
            key, row_id = decode_name_cursor(cursor)
        else:
            key, row_id = decode_cursor(cursor)
        if descending:
            query = query.where(or_(column < key, and_(column == key, model.id < row_id)))
        else:
            query = query.where(or_(column > key, and_(column == key, model.id > row_id)))
    if descending:
        return query.order_by(column.desc(), model.id.desc())
    return query.order_by(column, model.id)


def cursor_of(row: Any, sort: Sort) -> str:
    """The cursor of a row (or view) with ``id`` and ``created_at`` (and ``name``)."""
    if sort.by_name:
        return encode_name_cursor(row.name, row.id)
    return encode_cursor(row.created_at, row.id)


def after(query: SelectT, model: Model, cursor: str | None) -> SelectT:
    """``query`` narrowed to the rows after ``cursor`` (all of them for None)."""
    if cursor is None:
        return query
    created, row_id = decode_cursor(cursor)
    return query.where(
        or_(model.created_at > created, and_(model.created_at == created, model.id > row_id))
    )
