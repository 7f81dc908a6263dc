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
    held, release = await _hold(sessions)
    tasks = []
    for name, urgent in writers:
        tasks.append(asyncio.create_task(_write(sessions, name, urgent)))
        await _queued(sessions, len(tasks))  # queued in this order
    release.set()
    await asyncio.gather(held, *tasks)
    return await _log(sessions)


async def _write(sessions: async_sessionmaker[AsyncSession], name: str, urgent: bool) -> None:
    async with UnitOfWork.begin(sessions, urgent=urgent) as work:
        await work.session.execute(text("INSERT INTO log VALUES (:w)"), {"w": name})


async def _hold(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A writer that has taken the turn and keeps it, paused, until the event is set."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with UnitOfWork.begin(sessions):
            holding.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await holding.wait()
    return held, release


async def _log(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """The writers' names, in the order their rows were committed."""
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
    held, release = await _hold(sessions)
    waiting = asyncio.create_task(_write(sessions, "cancelled", True))
    await _queued(sessions, 1)
    waiting.cancel()
    release.set()
    await asyncio.gather(held, waiting, return_exceptions=True)
    assert waiting.cancelled()
    async with asyncio.timeout(10):  # the turn is free again
        await _write(sessions, "next", False)
    assert await _log(sessions) == ["next"]


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


async def test_writers_that_never_pause_never_queue(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Units of work whose statements run on the loop's thread (SQLite's, here) end within one
    step, so none of them ever finds the turn taken. Closing the session inside the turn (an
    AsyncSession closes in a task of its own) kept the turn through a turn of the loop, and
    every writer that came meanwhile queued."""
    most_queued = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most_queued
        while not done.is_set():
            most_queued = max(most_queued, queued_writers(sessions))
            await asyncio.sleep(0)

    async with UnitOfWork.begin(sessions):  # the connection is open: no writer opens one
        pass
    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(_write(sessions, f"w-{i}", True) for i in range(20)))
    done.set()
    await watcher
    assert most_queued == 0
    assert len(await _log(sessions)) == 20


async def test_a_writer_takes_the_turn_while_a_queued_one_is_being_woken(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A writer that lets go wakes the next in line without holding the turn for it: one that
    comes along before the woken writer runs takes the unused turn and is done by then. Held
    for the woken writer instead, the turn stayed unused for a turn of the loop at each
    hand-off while newcomers queued, and under a stream of writers the line never emptied."""
    held, release = await _hold(sessions)
    queued = [asyncio.create_task(_write(sessions, f"queued-{i}", True)) for i in range(2)]
    await _queued(sessions, 2)
    release.set()  # the holder lets go at its next step, waking the first queued writer
    newcomer = asyncio.create_task(_write(sessions, "newcomer", True))  # runs before that one
    await asyncio.gather(held, *queued, newcomer)
    assert await _log(sessions) == ["newcomer", "queued-0", "queued-1"]


async def test_a_woken_writer_passed_once_is_handed_the_turn_next() -> None:
    """A woken writer that finds the turn taken (its taker paused inside the transaction) is
    handed it when that writer lets go, before anyone who came later."""
    queue = _WriteQueue()
    await queue.acquire(urgent=False)
    woken = asyncio.create_task(queue.acquire(urgent=True))
    await asyncio.sleep(0)  # waits
    queue.release()  # wakes it; the turn is free until it runs
    async with asyncio.timeout(10):
        await queue.acquire(urgent=False)  # taken at once, by a writer that will pause
    await asyncio.sleep(0)  # the woken writer ran, found the turn taken, and waits again
    assert not woken.done()
    later = asyncio.create_task(queue.acquire(urgent=True))
    await asyncio.sleep(0)
    queue.release()  # handed to the writer passed once, held for it
    assert queue.held
    async with asyncio.timeout(10):
        await woken
    assert not later.done()
    queue.release()
    async with asyncio.timeout(10):
        await later
    queue.release()
    assert not queue.held


async def test_a_writer_passed_once_and_cancelled_leaves_the_turn_to_the_next() -> None:
    queue = _WriteQueue()
    await queue.acquire(urgent=False)
    passed = asyncio.create_task(queue.acquire(urgent=True))
    await asyncio.sleep(0)
    queue.release()
    await queue.acquire(urgent=False)  # takes the turn before the woken writer runs
    await asyncio.sleep(0)  # that writer found it taken: it is handed the turn next
    later = asyncio.create_task(queue.acquire(urgent=False))
    await asyncio.sleep(0)
    passed.cancel()
    await asyncio.gather(passed, return_exceptions=True)
    assert passed.cancelled()
    queue.release()
    async with asyncio.timeout(10):
        await later
    queue.release()
    assert not queue.held
