"""The API's answers come first (app/events/foreground.py): the control loop's units of work
wait while a GraphQL request is in flight, for at most ``max_defer``; the guard counts every
GraphQL request over HTTP as in flight until it has been answered, except one that accepts a
streamed answer.

The guard is the real one (token lookup on the test database); what it hands the request to
is a small ASGI app that notes what the foreground count was while it answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from app.config import load_settings
from app.control.turns import Turns
from app.domain.enums import Role
from app.events.bus import InProcessBus
from app.events.foreground import Foreground
from app.services.api_deps import ApiDeps
from app.services.tenancy import create_token
from schema.http import HttpGuard

BOUND = 10.0  # seconds a condition may take at most


async def test_a_turn_waits_while_a_request_is_in_flight() -> None:
    foreground = Foreground(max_defer=BOUND * 2)
    turns = Turns(foreground=foreground)
    answered = asyncio.Event()

    async def answer() -> None:
        with foreground.serving():
            await answered.wait()

    request = asyncio.create_task(answer())
    await asyncio.sleep(0)  # the request is in flight
    turn = asyncio.create_task(turns.take())
    for _ in range(20):  # many loop turns: it still waits
        await asyncio.sleep(0)
    assert not turn.done()
    answered.set()
    await asyncio.wait_for(turn, BOUND)
    await request
    assert foreground.deferred == 1
    assert turns.given == 1


async def test_a_turn_waits_no_longer_than_max_defer() -> None:
    foreground = Foreground(max_defer=0.05)
    with foreground.serving():  # a request that is not answered meanwhile
        assert await asyncio.wait_for(foreground.yield_to_requests(), BOUND) is True


async def test_with_nothing_in_flight_a_turn_does_not_suspend() -> None:
    foreground = Foreground()
    turns = Turns(slice_seconds=3600, foreground=foreground)
    # A coroutine that does not suspend finishes on its first step.
    step = turns.take().__await__()
    with pytest.raises(StopIteration):
        step.send(None)
    assert foreground.deferred == 0
    assert turns.given == 0


class Noting:
    """An ASGI app that answers 200 and notes how many requests were in flight meanwhile."""

    def __init__(self, foreground: Foreground) -> None:
        self.foreground = foreground
        self.seen: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(self.foreground.in_flight)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
async def guarded(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[httpx.AsyncClient, Noting, Foreground, str]]:
    settings = load_settings(database_url=database_url)
    deps = ApiDeps(settings=settings, sessions=sessions, bus=InProcessBus())
    _, _, secret = await create_token(sessions, "acme", Role.ADMIN, settings, "t")
    foreground = Foreground()
    noting = Noting(foreground)
    transport = httpx.ASGITransport(app=HttpGuard(noting, deps, foreground))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://qaas.test") as http:
            yield http, noting, foreground, secret
    finally:
        await deps.close()


async def test_the_guard_counts_a_request_in_flight_until_it_is_answered(
    guarded: tuple[httpx.AsyncClient, Noting, Foreground, str],
) -> None:
    http, noting, foreground, secret = guarded
    auth = {"Authorization": f"Bearer {secret}"}
    assert await http.post("/graphql", json={"query": "{ viewer { role } }"}, headers=auth)
    assert await http.get("/graphql", params={"query": "{ viewer { role } }"}, headers=auth)
    assert noting.seen == [1, 1]
    assert foreground.in_flight == 0  # and no longer once answered

    # A refused request is in flight too while it is refused, and not after.
    refused = await http.post("/graphql", json={"query": "{ viewer { role } }"})
    assert refused.status_code == 401
    assert foreground.in_flight == 0

    # One that accepts a streamed answer may stay open for hours: it does not count.
    streamed = {**auth, "Accept": "multipart/mixed;subscriptionSpec=1.0, application/json"}
    await http.post("/graphql", json={"query": "subscription { x }"}, headers=streamed)
    await http.get("/graphql")  # GraphiQL's page: no GraphQL runs
    assert noting.seen == [1, 1, 0, 0]
