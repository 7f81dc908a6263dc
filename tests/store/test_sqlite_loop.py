"""SQLite statements run on the event loop's thread (no hand-back through the loop between
the statements of a write transaction), except the BEGIN that may wait for another process's
write lock, which must not stop the loop (app/store/sqlite_loop.py). A real SQLite file, and a
second connection holding its write lock as another process would."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.engine import make_engine, make_sessionmaker
from app.store.unit import UnitOfWork
from tests.helpers import holds


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}", busy_timeout=3.0)
    async with made.begin() as connection:
        await connection.execute(text("CREATE TABLE log (line TEXT)"))
    yield made
    await made.dispose()


async def test_statements_run_on_the_loops_thread(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        driver._conn.create_function("thread", 0, threading.get_ident)
        inside = (await connection.execute(text("SELECT thread()"))).scalar()
    assert inside == threading.get_ident()


async def test_a_begin_that_finds_the_lock_free_runs_on_the_loops_thread(
    engine: AsyncEngine,
) -> None:
    """No hand-off to aiosqlite's thread when no other process writes: the common case."""
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        raw = await (await session.connection()).get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        ran: list[tuple[str, int]] = []
        driver._conn.set_trace_callback(lambda sql: ran.append((sql, threading.get_ident())))
    for _ in range(2):  # the second BEGIN also finds the busy timeout as it was
        async with UnitOfWork.begin(sessions) as work:
            await work.session.execute(text("INSERT INTO log VALUES ('mine')"))
    begins = [thread for sql, thread in ran if sql.startswith("BEGIN")]
    assert begins == [threading.get_ident()] * 2
    assert ("PRAGMA busy_timeout=3000", threading.get_ident()) in ran


async def test_a_begin_that_waits_for_another_process_leaves_the_loop_running(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with UnitOfWork.begin(make_sessionmaker(engine)) as work:
            await work.session.execute(text("INSERT INTO log VALUES ('mine')"))

    ticker = asyncio.create_task(tick())
    writer = asyncio.create_task(write())
    try:
        await asyncio.sleep(0)  # the writer is now waiting for the lock
        await holds(lambda: ticks >= 20)  # the loop went on meanwhile
        assert not writer.done()  # still waiting, not given up
        other.execute("COMMIT")
        await asyncio.wait_for(writer, 10)
    finally:
        ticker.cancel()
        other.close()
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT line FROM log"))).scalars().all() == ["mine"]
