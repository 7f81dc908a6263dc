"""What the reconciler's next pass covers (app/control/schedule.py): everything at start, on
its period and on a kick that names no network; the named networks otherwise."""

from __future__ import annotations

import asyncio

from app.control.schedule import MOST_NETWORKS, PassSchedule


def _settled() -> PassSchedule:
    """A schedule past its first (full) pass, the next one an hour away."""
    schedule = PassSchedule(resync_seconds=3600)
    assert schedule.take() is None  # the first pass is a full one
    schedule.full_pass_in(3600)
    return schedule


def test_kicks_that_name_networks_ask_for_a_pass_over_those_only() -> None:
    schedule = _settled()
    assert schedule.take() == set()  # nothing asked for
    schedule.kick("a")
    schedule.kick("b")
    schedule.kick("a")
    assert schedule.take() == {"a", "b"}
    assert schedule.take() == set()  # taken: no longer pending


def test_a_kick_that_names_none_or_too_many_asks_for_a_full_pass() -> None:
    schedule = _settled()
    schedule.kick("a")
    schedule.kick()
    assert schedule.take() is None
    assert schedule.take() == set()  # "a" was covered by it
    for k in range(MOST_NETWORKS):
        schedule.kick(f"n{k}")
    assert schedule.take() == {f"n{k}" for k in range(MOST_NETWORKS)}
    for k in range(MOST_NETWORKS + 1):
        schedule.kick(f"n{k}")
    assert schedule.take() is None


def test_the_full_pass_comes_when_due_whatever_the_kicks_name() -> None:
    schedule = _settled()
    schedule.kick("a")
    schedule.full_pass_in(0)  # due now (its period, or a failed pass's back-off, is over)
    assert schedule.take() is None


async def test_wait_returns_on_a_kick_and_when_the_full_pass_is_due() -> None:
    schedule = _settled()
    waiting = asyncio.create_task(schedule.wait())
    await asyncio.sleep(0)
    assert not waiting.done()  # an hour to go, nothing kicked
    schedule.kick("a")
    await asyncio.wait_for(waiting, 5)
    schedule.take()
    schedule.full_pass_in(0.01)
    await asyncio.wait_for(schedule.wait(), 5)  # returns by itself once the pass is due
    assert schedule.take() is None
