"""The lean WebSocket protocol's stand-ins for asyncio.Queue and asyncio.Event
(app/cli/websocket.py): the same behaviour uvicorn relies on, with less held while idle."""

from __future__ import annotations

import asyncio

from app.cli.websocket import _Inbox, _Writable


async def test_the_inbox_hands_out_messages_in_order_and_wakes_a_waiting_reader() -> None:
    inbox = _Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)  # the reader waits
    assert not reader.done()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await reader == 1
    assert inbox.qsize() == 1
    assert await inbox.get() == 2
    assert inbox.empty()


async def test_a_cancelled_reader_does_not_take_a_message_from_the_next() -> None:
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    first.cancel()
    inbox.put_nowait("m")
    async with asyncio.timeout(5):  # a liveness bound: the wake-up was lost otherwise
        assert await second == "m"
    assert first.cancelled()
    assert inbox.empty()


async def test_two_readers_each_get_one_message() -> None:
    inbox = _Inbox()
    readers = [asyncio.create_task(inbox.get()) for _ in range(2)]
    await asyncio.sleep(0)
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    async with asyncio.timeout(5):  # a liveness bound
        assert sorted(await asyncio.gather(*readers)) == ["a", "b"]


async def test_writers_wait_while_the_transport_is_full_and_go_on_when_it_drains() -> None:
    writable = _Writable()
    assert writable.is_set()
    await writable.wait()  # open: no wait
    writable.clear()
    writers = [asyncio.create_task(writable.wait()) for _ in range(2)]
    cancelled = asyncio.create_task(writable.wait())
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers)
    cancelled.cancel()  # one sender gives up: the others still wait, then go on
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers)
    writable.set()
    async with asyncio.timeout(5):  # a liveness bound
        await asyncio.gather(*writers)
    assert writable.is_set()
