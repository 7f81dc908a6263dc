"""Subscribers opening at once share a snapshot read, never one that began before they asked."""

from __future__ import annotations

import asyncio

from schema.fanout import ReadQueue


class Fetches:
    """A read that counts its runs and can be held open."""

    def __init__(self) -> None:
        self.started = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = asyncio.Event()  # set once a read started
        self.log: list[str] = []

    async def __call__(self) -> int:
        self.started += 1
        run = self.started
        self.log.append(f"start {run}")
        self.running.set()
        await self.gate.wait()
        self.log.append(f"end {run}")
        return run


async def test_callers_of_the_same_turn_share_one_read() -> None:
    queue: ReadQueue[str, int] = ReadQueue()
    fetch = Fetches()
    results = await asyncio.gather(*(queue.read("k", fetch) for _ in range(5)))
    assert results == [1] * 5
    assert fetch.started == 1
    assert await queue.read("other", fetch) == 2  # another key reads on its own


async def test_a_caller_during_a_read_gets_a_read_that_starts_after_it() -> None:
    queue: ReadQueue[str, int] = ReadQueue()
    fetch = Fetches()
    fetch.gate.clear()
    first = asyncio.ensure_future(queue.read("k", fetch))
    await fetch.running.wait()
    late = [asyncio.ensure_future(queue.read("k", fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    assert fetch.started == 1  # the next read waits for the one in flight
    fetch.gate.set()
    assert await first == 1
    assert await asyncio.gather(*late) == [2, 2, 2]
    assert fetch.log == ["start 1", "end 1", "start 2", "end 2"]


async def test_a_caller_that_leaves_does_not_cancel_the_read_for_the_others() -> None:
    queue: ReadQueue[str, int] = ReadQueue()
    fetch = Fetches()
    fetch.gate.clear()
    leaving = asyncio.ensure_future(queue.read("k", fetch))
    staying = asyncio.ensure_future(queue.read("k", fetch))
    await fetch.running.wait()
    leaving.cancel()
    fetch.gate.set()
    assert await staying == 1
    assert leaving.cancelled()


async def test_a_failed_read_fails_its_callers_and_the_next_one_reads_again() -> None:
    queue: ReadQueue[str, int] = ReadQueue()
    runs = 0

    async def failing() -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise LookupError("no such network")
        return runs

    outcomes = await asyncio.gather(
        queue.read("k", failing), queue.read("k", failing), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [LookupError, LookupError]
    assert await queue.read("k", failing) == 2
