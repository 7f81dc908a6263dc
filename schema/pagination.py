"""Relay pagination pieces: PageInfo and the bounds every connection enforces."""

from __future__ import annotations

import strawberry

from schema.errors import ClientError

MAX_PAGE = 100


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def page_args(first: int) -> int:
    """``first`` if it is within 1..100 (like GitHub's API), else a clear client error."""
    if not 1 <= first <= MAX_PAGE:
        raise ClientError(f"`first` must be between 1 and {MAX_PAGE} (got {first})")
    return first
