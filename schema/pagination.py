"""Relay pagination pieces: PageInfo, the bounds every connection enforces, and the
``first``/``after`` (forwards) or ``last``/``before`` (backwards) window of a connection."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry

from schema.errors import ClientError

MAX_PAGE = 100


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def page_args(first: int, name: str = "first") -> int:
    """``first`` if it is within 1..100 (like GitHub's API), else a clear client error."""
    if not 1 <= first <= MAX_PAGE:
        raise ClientError(f"`{name}` must be between 1 and {MAX_PAGE} (got {first})")
    return first


@dataclass(frozen=True)
class Window:
    """Which page: ``size`` rows after ``cursor``, or before it when ``backward``."""

    size: int
    cursor: str | None
    backward: bool


def window(
    first: int | None, after: str | None, last: int | None, before: str | None, default: int = 20
) -> Window:
    """Relay's arguments as a window: ``first`` (default ``default``) rows after ``after``, or
    ``last`` rows before ``before``. Mixing the two directions is refused."""
    if first is not None and last is not None:
        raise ClientError("give `first` or `last`, not both")
    if last is not None or (before is not None and first is None):
        if after is not None:
            raise ClientError("`after` goes with `first`, `before` with `last`")
        return Window(page_args(default if last is None else last, "last"), before, True)
    if before is not None:
        raise ClientError("`after` goes with `first`, `before` with `last`")
    return Window(page_args(default if first is None else first), after, False)
