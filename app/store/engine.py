"""Engines and sessions for SQLite (WAL, busy timeout, foreign keys) and PostgreSQL (asyncpg),
the one sentence that says why a database cannot be used, and SQLite's write turns.

SQLite has one write lock per database. ``write_turn`` makes this process's write transactions
take turns for it in asyncio (a writer that finds the turn unused takes it; the others wait in
line, a mutation's before the control loop's, a few at a time), each then beginning with
``BEGIN IMMEDIATE`` (``app/store/unit.py``); a write lock held by another process (``qaas token
create``) longer than the busy timeout is ``DatabaseBusy``, which the API answers as UNAVAILABLE
with a retry delay.
SQLite's calls run on the event loop's thread, and a ``BEGIN`` that finds another process's
write lock waits for it on aiosqlite's (``sqlite_loop.py``): a transaction holds the write lock
for its statements, not for turns of a busy loop.

``synchronous=NORMAL`` under WAL: a commit survives the process being killed (its pages are in
the WAL file, which the operating system holds); only a power cut or kernel crash may lose the
last commits before a checkpoint, never corrupt the file. ``qaas serve`` checkpoints on a thread
of its own, not inside a commit on the event loop (``checkpoint.py``).

Example::

    engine = make_engine("sqlite+aiosqlite:///./qaas.db")
    sessions = make_sessionmaker(engine)
    async with sessions() as session:         # reads (concurrent, under WAL)
        ...
    async with UnitOfWork.begin(sessions) as work:   # writes: app/store/unit.py
        ...
    await reach("postgresql+asyncpg://qaas@db:1/qaas")
    # DatabaseUnavailable: cannot connect to the database at postgresql+asyncpg://qaas@db:1/qaas:
    # connection refused; check that PostgreSQL runs at db:1, or fix QAAS_DATABASE_URL
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import socket
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import app.store.changes  # noqa: F401  (counts committed changes of every session)
from app.domain.text import one_line
from app.store import sqlite_loop

SQLITE_BUSY_TIMEOUT = 5.0  # seconds (QAAS_SQLITE_BUSY_TIMEOUT)
# How long a writer may queue behind this process's other writers (as long as SQLAlchemy's pool
# lets a request wait for a connection): the queue moves in order, so a wait this long means a
# stuck writer, not a busy one.
WRITE_QUEUE_TIMEOUT = 30.0
# How many requests' writers may go before a waiting control-loop writer (see _WriteQueue).
URGENT_IN_A_ROW = 4
CONNECT_TIMEOUT_SECONDS = 10  # for reach(): a host that drops packets is a fault, not a hang


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened. The message is one sentence for the operator:
    what failed, where (the URL with its password masked, or the SQLite file) and what to do."""


class DatabaseBusy(RuntimeError):
    """Another process held SQLite's write lock longer than the busy timeout: nothing was
    written; the caller may try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _WriteQueue:
    """One writer at a time. A writer that finds the turn unused takes it; the others wait in
    line, a request's writer (``urgent``: a mutation someone waits for) before the control
    loop's, at most ``URGENT_IN_A_ROW`` times in a row while one of those waits, so neither
    side can starve the other.

    A writer that lets go wakes the next in line but does not hold the turn for it: until the
    woken writer runs, a writer that comes along takes the unused turn. On SQLite the statements
    run on the loop's thread, so such a writer usually ends its transaction within one step and
    the woken one finds the turn free again. Holding the turn for the woken writer instead left
    it unused for a turn of the loop at every hand-off, while each writer that came meanwhile
    joined the line: under a steady stream of mutations the line never emptied (a convoy; in
    bench/mutations.py two writers in three waited, for 1 ms a hand-off). A woken writer that
    finds the turn taken (its taker paused inside the transaction: a ``BEGIN`` waiting for
    another process's lock) goes back to the head of the line and is handed the turn itself
    next time, so no writer is passed more than once."""

    def __init__(self) -> None:
        self.held = False
        # Each waiter's future: True when handed the turn (held for it), False when woken to
        # take it if it is still free.
        self.waiting: tuple[collections.deque[asyncio.Future[bool]], ...] = (
            collections.deque(),  # urgent
            collections.deque(),  # background
        )
        self.woken: asyncio.Future[bool] | None = None  # woken, has not run yet
        self.passed: asyncio.Future[bool] | None = None  # found it taken: is handed it next
        self.urgent_in_a_row = 0

    async def acquire(self, urgent: bool) -> None:
        if not self.held:
            self.held = True
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self.waiting[0 if urgent else 1].append(turn)
        while True:
            try:
                handed = await turn
            except asyncio.CancelledError:
                if self.passed is turn:
                    self.passed = None
                if turn.done() and not turn.cancelled():  # woken as it was cancelled
                    if turn.result():
                        self.release()
                    else:
                        self.woken = None
                        self._wake()
                raise
            if handed:
                return
            self.woken = None
            if not self.held:
                self.held = True
                return
            turn = self.passed = loop.create_future()

    def release(self) -> None:
        self.held = False
        self._wake()

    def _wake(self) -> None:
        """Hand the free turn to a writer passed once, or wake the next in line."""
        if self.held or self.woken is not None:
            return
        if self.passed is not None:
            self.held = True
            self.passed.set_result(True)
            self.passed = None
            return
        urgent, background = self.waiting
        first = urgent
        if self.urgent_in_a_row >= URGENT_IN_A_ROW and _pending(background):
            first = background
        for queue in (first, background if first is urgent else urgent):
            while queue:
                turn = queue.popleft()
                if not turn.done():  # a cancelled waiter is skipped
                    self.urgent_in_a_row = self.urgent_in_a_row + 1 if queue is urgent else 0
                    self.woken = turn
                    turn.set_result(False)
                    return
        self.urgent_in_a_row = 0


def _pending(queue: collections.deque[asyncio.Future[bool]]) -> bool:
    return any(not turn.done() for turn in queue)


class _Turns:
    """One engine's write turns: a queue per event loop, and how long to wait."""

    def __init__(self, busy_timeout: float) -> None:
        self.busy_timeout = busy_timeout
        self.queued = 0  # writers waiting for their turn
        self.queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteQueue] = (
            weakref.WeakKeyDictionary()
        )

    def queue(self) -> _WriteQueue:
        loop = asyncio.get_running_loop()
        found = self.queues.get(loop)
        if found is None:
            found = self.queues[loop] = _WriteQueue()
        return found

    def busy(self, what: str) -> DatabaseBusy:
        return DatabaseBusy(
            f"the database is busy ({what}); try again",
            retry_after=max(1, math.ceil(self.busy_timeout)),
        )


_turns: weakref.WeakKeyDictionary[Engine, _Turns] = weakref.WeakKeyDictionary()


def _turns_of(sessions: async_sessionmaker[AsyncSession]) -> _Turns | None:
    """The SQLite engine's write turns; None for PostgreSQL."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return None
    found = _turns.get(bind.sync_engine)
    if found is None:
        found = _turns[bind.sync_engine] = _Turns(SQLITE_BUSY_TIMEOUT)
    return found


@contextlib.asynccontextmanager
async def write_turn(
    sessions: async_sessionmaker[AsyncSession], *, urgent: bool = False
) -> AsyncIterator[bool]:
    """This process's turn to write (SQLite: one writer at a time, in the order they came,
    ``urgent`` ones first; ``DatabaseBusy`` after waiting the busy timeout). Yields whether the
    transaction must begin with ``BEGIN IMMEDIATE`` (SQLite) or not (PostgreSQL: no turns, row
    locks)."""
    turns = _turns_of(sessions)
    if turns is None:
        yield False
        return
    queue = turns.queue()
    wait = max(turns.busy_timeout, WRITE_QUEUE_TIMEOUT)
    turns.queued += 1
    try:
        async with asyncio.timeout(wait):
            await queue.acquire(urgent)
    except TimeoutError:
        raise turns.busy(f"this process's writers queued for {wait:g} s") from None
    finally:
        turns.queued -= 1
    try:
        yield True
    finally:
        queue.release()


def queued_writers(sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many of this process's writers wait for their turn (always 0 on PostgreSQL)."""
    turns = _turns_of(sessions)
    return 0 if turns is None else turns.queued


def busy_error(
    sessions: async_sessionmaker[AsyncSession], error: OperationalError
) -> DatabaseBusy | None:
    """``error`` as ``DatabaseBusy`` if it is SQLite's "database is locked", else None."""
    turns = _turns_of(sessions)
    if turns is None or "database is locked" not in str(error.orig):
        return None
    return turns.busy(f"another process held the write lock for {turns.busy_timeout:g} s")


def make_engine(
    url: str,
    busy_timeout: float = SQLITE_BUSY_TIMEOUT,
    wal_checkpoints: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """``busy_timeout``: how long a SQLite writer waits for the write lock, in seconds.
    ``wal_checkpoints=False``: SQLite's commits never checkpoint; the caller runs a
    ``WalCheckpointer`` (checkpoint.py) off the event loop, as ``qaas serve`` does."""
    if url.startswith("sqlite"):
        # Statements run on the loop's thread; a BEGIN that must wait, on aiosqlite's.
        connect_args = {"timeout": 30, "async_creator_fn": sqlite_loop.connect}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        _turns[engine.sync_engine] = _Turns(busy_timeout)
        busy_ms = max(1, round(busy_timeout * 1000))

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers run while the reconciler writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if not wal_checkpoints:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """None if the database answers, else one sentence saying why not (for readiness checks)."""
    try:
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as error:  # readiness reports any failure as not ready
        bind = sessions.kw.get("bind")
        return describe(bind.url, error) if isinstance(bind, AsyncEngine) else repr(error)
    return None


async def reach(url: str) -> None:
    """Connect to the database at ``url`` once; raise ``DatabaseUnavailable`` if that fails."""
    problem = _sqlite_problem(make_url(url))
    if problem is not None:
        raise DatabaseUnavailable(problem)
    options: dict[str, Any] = {}
    if not url.startswith("sqlite"):
        options["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    engine = make_engine(url, **options)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (OSError, DBAPIError) as error:  # asyncpg's socket errors come through unwrapped
        raise DatabaseUnavailable(describe(url, error)) from None
    finally:
        await engine.dispose()


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown and logged: any password masked."""
    return make_url(url).render_as_string(hide_password=True)


def describe(url: str | URL, error: BaseException) -> str:
    """One sentence: the database at ``url`` failed with ``error``, and what to do about it."""
    parsed = make_url(url)
    cause = getattr(error, "orig", None) or error
    if parsed.get_backend_name() == "sqlite":
        where = _sqlite_file(parsed) or safe_url(parsed)
        return (
            f"cannot open the SQLite database {where}: {one_line(cause, 200)}; "
            "set QAAS_DATABASE_URL to a file in a directory this process can write"
        )
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    state = getattr(cause, "sqlstate", None)
    if isinstance(error, ConnectionRefusedError):
        reason = "connection refused"
        advice = f"check that PostgreSQL runs at {where}, or fix QAAS_DATABASE_URL"
    elif isinstance(error, socket.gaierror):
        reason = f"unknown host {parsed.host} ({error.strerror})"
        advice = "fix the host in QAAS_DATABASE_URL"
    elif isinstance(error, TimeoutError):
        reason = f"no answer from {where} within {CONNECT_TIMEOUT_SECONDS} s"
        advice = "check the host, the port and any firewall in between"
    elif state == "3D000":  # invalid_catalog_name
        reason = f'database "{parsed.database}" does not exist'
        advice = "create it (then run `qaas migrate`), or fix the name in QAAS_DATABASE_URL"
    elif state in ("28000", "28P01"):  # invalid authorization, invalid password
        reason = one_line(cause, 200)
        advice = "fix the user or password in QAAS_DATABASE_URL"
    else:
        reason = one_line(cause, 200)
        advice = "check QAAS_DATABASE_URL and the database server's log"
    return f"cannot connect to the database at {safe_url(parsed)}: {reason}; {advice}"


def sqlite_file(url: str) -> str | None:
    """The SQLite database file ``url`` names (absolute), or None (another database, memory)."""
    parsed = make_url(url)
    return _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None


def _sqlite_file(url: URL) -> str | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(Path(database).expanduser())


def _sqlite_problem(url: URL) -> str | None:
    """Why a SQLite file cannot be opened and written, said before SQLite says it less clearly
    ("unable to open database file"); None if nothing is visibly wrong."""
    if url.get_backend_name() != "sqlite" or (name := _sqlite_file(url)) is None:
        return None
    path = Path(name)
    folder = path.parent
    advice = "set QAAS_DATABASE_URL to a file in a directory this process can write"
    if not folder.exists():
        reason, advice = f"the directory {folder} does not exist", f"create it, or {advice}"
    elif not folder.is_dir():
        reason = f"{folder} is not a directory"
    elif path.exists() and not path.is_file():
        reason = "it is not a file"
    elif not os.access(folder, os.W_OK | os.X_OK):  # SQLite writes its WAL files beside it
        reason = f"this process may not write in {folder}"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        reason, advice = (
            "this process may not read and write it",
            f"fix its permissions, or {advice}",
        )
    else:
        return None
    return f"cannot open the SQLite database {path}: {reason}; {advice}"
