"""SQLite statements run on the event loop's thread, except the one that may wait for a lock.

aiosqlite runs every call (make a cursor, execute, fetch, close) on a thread of its own and hands
the result back through the event loop. Each hand-back waits for the loop to come round, so a
statement costs as many loop turns as it has calls, and a write transaction holds SQLite's one
write lock across all of them: with the loop busy serving other requests, ten statements held
the lock for about 75 ms where they need 7 (bench/sqlite_loop.py: three tasks keep the loop
busy, one core). Every writer of the process queues behind that lock (``write_turn``).

SQLite itself answers these calls in microseconds: under WAL a reader never waits for a writer,
and a writer that holds the lock (after ``BEGIN IMMEDIATE``) waits for nobody. So this connection
runs them inline, on the loop's thread. Only a ``BEGIN`` may wait: up to the busy timeout, for
another process's write lock (``qaas token create``, a second ``qaas serve`` on the same file).
It is tried inline first with the busy handler off, which succeeds at once when no other process
writes (the common case: a hand-off to aiosqlite's thread and back cost a write transaction
about a millisecond, most of it waking that thread); only when the lock is held does it go to
aiosqlite's thread to wait there. Opening and closing the connection go there too.

The cost: the loop does the SQLite work itself, so a very large read (the reconciler's pass over
10,000 nodes) holds the loop for its SQLite time, as the Python that decodes its rows already did.

Example::

    engine = create_async_engine(url, connect_args={"async_creator_fn": sqlite_loop.connect})
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite


class LoopConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the caller's thread, except a BEGIN that
    finds another process's write lock."""

    _busy_ms: int | None = None  # the connection's busy timeout, read at its first BEGIN

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if connection is None:
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not may_wait(args):
            return fn(*args, **kwargs)
        if self._busy_ms is None:
            self._busy_ms = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        connection.execute("PRAGMA busy_timeout=0")  # fail at once instead of waiting here
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        finally:
            connection.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        # Another process holds the write lock: wait for it on aiosqlite's thread.
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def may_wait(args: tuple[Any, ...]) -> bool:
    """True for a call that may wait for another process's lock: a statement that begins a
    transaction (``BEGIN IMMEDIATE`` takes the write lock, waiting up to the busy timeout)."""
    return bool(args) and isinstance(args[0], str) and args[0].lstrip()[:5].upper() == "BEGIN"


def connect(database: str, **kwargs: Any) -> LoopConnection:
    """SQLAlchemy's ``async_creator_fn``: called with what it would give ``sqlite3.connect``."""
    # Opened on aiosqlite's thread, then used on the loop's: never by both at once.
    kwargs["check_same_thread"] = False
    connection = LoopConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does: it never holds the process open
    return connection
