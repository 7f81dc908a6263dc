"""The order of this process's SQLite writers: a request's before the control loop's, but never
so many in a row that a control-loop writer starves; a writer cancelled while it waits gives
its turn away. Real units of work on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.store.engine import (
    URGENT_IN_A_ROW,
    _WriteQueue,
    make_engine,
    make_sessionmaker,
    queued_writers,
)
from app.store.unit import UnitOfWork
from tests.helpers import eventually


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'order.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE log (writer TEXT)"))
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _writes_in_order(
    sessions: async_sessionmaker[AsyncSession], writers: list[tuple[str, bool]]
) -> list[str]:
    """Hold the turn, queue ``writers`` (name, urgent) in that order, let go: the order in
    which their rows were committed."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def write(name: str, urgent: bool) -> None:
        async with UnitOfWork.begin(sessions, urgent=urgent) as work:
            await work.session.execute(text("INSERT INTO log VALUES (:w)"), {"w": name})

    async def holder() -> None:
        async with UnitOfWork.begin(sessions):
            holding.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await holding.wait()
    tasks = []
    for name, urgent in writers:
        tasks.append(asyncio.create_task(write(name, urgent)))
        await _queued(sessions, len(tasks))  # queued in this order
    release.set()
    await asyncio.gather(held, *tasks)
    async with sessions() as session:
        rows = (await session.execute(text("SELECT writer FROM log ORDER BY rowid"))).scalars()
        return [str(row) for row in rows]


async def _queued(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async def enough() -> bool:
        return queued_writers(sessions) >= count

    await eventually(enough, every=0.001)


async def test_a_request_writes_before_queued_control_loop_writes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order = await _writes_in_order(
        sessions, [("loop-1", False), ("loop-2", False), ("mutation", True)]
    )
    assert order == ["mutation", "loop-1", "loop-2"]


async def test_a_control_loop_writer_waits_for_a_few_requests_at_most(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    urgent = [(f"mutation-{i}", True) for i in range(URGENT_IN_A_ROW + 3)]
    order = await _writes_in_order(sessions, [("loop", False), *urgent])
    assert order.index("loop") == URGENT_IN_A_ROW


async def test_a_writer_cancelled_while_it_waits_does_not_keep_the_turn(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with UnitOfWork.begin(sessions):
            holding.set()
            await release.wait()

    async def writer(urgent: bool) -> None:
        async with UnitOfWork.begin(sessions, urgent=urgent):
            pass

    held = asyncio.create_task(holder())
    await holding.wait()
    waiting = asyncio.create_task(writer(True))
    await _queued(sessions, 1)
    waiting.cancel()
    release.set()
    await asyncio.gather(held, waiting, return_exceptions=True)
    assert waiting.cancelled()
    async with asyncio.timeout(10):  # the turn is free again
        await writer(False)


async def test_a_writer_cancelled_as_it_is_handed_the_turn_passes_it_on() -> None:
    queue = _WriteQueue()
    await queue.acquire(urgent=False)
    first = asyncio.create_task(queue.acquire(urgent=True))
    second = asyncio.create_task(queue.acquire(urgent=False))
    await asyncio.sleep(0)  # both wait
    queue.release()  # hands the turn to the first...
    first.cancel()  # ...which is cancelled before it could run
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    async with asyncio.timeout(10):
        await second  # the first's turn went on to the second
    queue.release()
    assert not queue.held
