"""Keyset pages on (created_at, id): stable under inserts, no OFFSET scans.

A cursor is opaque to clients (base64 of the last row's key) and checked strictly: a cursor we
did not hand out is the caller's mistake (``BadCursor``), never a fault.

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
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_

from app.store.models import ApiToken, Network, Node

T = TypeVar("T")


class BadCursor(ValueError):
    """The ``after`` cursor was not one we handed out."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next: bool
    total: int

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def encode_cursor(created_at: datetime.datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    try:
        created, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        at = datetime.datetime.fromisoformat(created)
        uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"{cursor!r} is not a valid cursor") from None
    if at.tzinfo is None:  # ours always carry their zone
        raise BadCursor(f"{cursor!r} is not a valid cursor")
    return at, row_id


SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


def after(
    query: SelectT, model: type[Network] | type[Node] | type[ApiToken], cursor: str | None
) -> SelectT:
    """``query`` narrowed to the rows after ``cursor`` (all of them for None)."""
    if cursor is None:
        return query
    created, row_id = decode_cursor(cursor)
    return query.where(
        or_(model.created_at > created, and_(model.created_at == created, model.id > row_id))
    )
