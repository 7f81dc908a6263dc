"""The foreground (app/events/foreground.py) on a real event loop: background units get their
turn at once when nothing is answered, wait while a request is in flight, go one at a time
(a request that starts meanwhile holds back the rest), go every ``max_defer`` when requests never
stop; one cancelled while it waits is skipped, one cancelled once let go passes its turn on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.control.turns import Turns
from app.events.foreground import Foreground

LONG = 3600.0  # a max_defer that never runs out during a test


async def _spin(times: int = 50) -> None:
    """Let the loop go round ``times`` times (timers due now included)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def _turns_until(condition: Callable[[], bool], most: int = 1000) -> None:
    """Go round the loop until ``condition`` holds, checked at every turn."""
    for _ in range(most):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not so after {most} turns of the loop")


async def test_with_nothing_in_flight_a_turn_does_not_suspend() -> None:
    foreground = Foreground()
    step = foreground.turn().__await__()
    with pytest.raises(StopIteration) as done:  # finished on its first step
        step.send(None)
    assert done.value.value is False
    assert foreground.deferred == 0


async def test_a_turn_waits_while_a_request_is_in_flight() -> None:
    foreground = Foreground(max_defer=LONG)
    turns = Turns(slice_seconds=LONG, foreground=foreground)
    with foreground.serving():
        unit = asyncio.create_task(turns.take())
        await _spin()
        assert not unit.done()
    await asyncio.wait_for(unit, 10)
    assert (foreground.deferred, turns.given) == (1, 1)


async def test_units_go_one_at_a_time_and_a_request_holds_back_the_rest() -> None:
    foreground = Foreground(max_defer=LONG)
    ran: list[str] = []
    answered = asyncio.Event()

    async def request() -> None:
        with foreground.serving():
            ran.append("request")
            await answered.wait()

    async def unit(name: str) -> None:
        await foreground.turn()
        ran.append(name)
        if name == "unit-1":  # a request arrives while the first unit runs
            asyncio.get_running_loop().create_task(request())

    with foreground.serving():
        units = [asyncio.create_task(unit(f"unit-{i}")) for i in (1, 2, 3)]
        await _spin()
        assert ran == []
    await _spin()
    assert ran == ["unit-1", "request"]  # the others wait for the new request's answer
    answered.set()
    await asyncio.wait_for(asyncio.gather(*units), 10)
    assert ran == ["unit-1", "request", "unit-2", "unit-3"]


async def test_under_requests_that_never_stop_a_unit_goes_every_max_defer() -> None:
    foreground = Foreground(max_defer=0.05)
    loop = asyncio.get_running_loop()
    went: list[float] = []

    async def unit() -> None:
        await foreground.turn()
        went.append(loop.time())

    with foreground.serving():  # never answered during the test
        started = loop.time()
        await asyncio.wait_for(asyncio.gather(*(unit() for _ in range(3))), 10)
    gaps = [b - a for a, b in zip([started, *went], went, strict=False)]
    assert all(gap >= 0.045 for gap in gaps), gaps  # not all at once after the first wait


async def test_a_unit_cancelled_in_line_is_skipped() -> None:
    foreground = Foreground(max_defer=LONG)
    with foreground.serving():
        first, second, third = (asyncio.create_task(foreground.turn()) for _ in range(3))
        await _spin()
        second.cancel()
        await _spin()
    assert list(await asyncio.wait_for(asyncio.gather(first, third), 10)) == [True, True]
    assert second.cancelled()


async def test_a_unit_cancelled_after_its_turn_came_passes_it_on() -> None:
    foreground = Foreground(max_defer=LONG)
    with foreground.serving():
        first = asyncio.create_task(foreground.turn())
        second = asyncio.create_task(foreground.turn())
        await _spin()
    await _turns_until(lambda: foreground.waiting == 1)  # the first let go, not yet run
    first.cancel()
    assert await asyncio.wait_for(second, 10) is True  # no request ended meanwhile
    assert first.cancelled()
