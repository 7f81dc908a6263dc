"""The API's answers come first, through the whole service: while a GraphQL request is being
answered (here: its body is still arriving), a write of the running control loop waits, and
goes once the request is answered. A request that accepts a streamed answer does not count.

The service is the real one (``create_app``, its control loop on the sandbox); only its
foreground's ``max_defer`` is raised, so that nothing but the answer lets the write go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.store.models import Node
from tests.api.queries import create_network
from tests.helpers import GraphQLClient, eventually

VIEWER = b'{"query": "{ viewer { role } }"}'


class Held:
    """A request body that stops after its first byte until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()  # the server has asked for the rest
        self.released = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield VIEWER[:1]
        self.started.set()
        await self.released.wait()
        yield VIEWER[1:]


async def _message(sessions: async_sessionmaker[AsyncSession], node_id: str) -> str | None:
    async with sessions() as session:
        return await session.scalar(select(Node.pod_message).where(Node.id == node_id))


async def test_a_control_loop_write_waits_while_a_request_is_answered(
    app: Starlette, api: GraphQLClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_network(api, "fg")
    async with sessions() as session:
        node_id = await session.scalar(select(Node.id))
    assert node_id is not None
    foreground, writer = app.state.foreground, app.state.control.reconciler.writer
    foreground.max_defer = 3600.0

    async def mark(_: AsyncSession, node: Node) -> bool:
        node.pod_message = "written after the answer"
        return True

    body = Held()
    request = asyncio.create_task(
        api.http.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    )
    await eventually(lambda: _true(foreground.in_flight == 1))
    waited = foreground.deferred
    write = asyncio.create_task(writer.write(node_id, mark))
    await eventually(lambda: _true(foreground.deferred > waited))  # it is in line
    for _ in range(100):
        await asyncio.sleep(0)
    assert not write.done()
    assert await _message(sessions, node_id) != "written after the answer"

    body.released.set()
    answer = await asyncio.wait_for(request, 10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["viewer"]["role"] == "ADMIN"
    assert (await asyncio.wait_for(write, 10)) is not None
    assert await _message(sessions, node_id) == "written after the answer"
    assert foreground.in_flight == 0


async def test_a_request_that_accepts_a_stream_does_not_count(
    app: Starlette, api: GraphQLClient
) -> None:
    foreground = app.state.foreground
    streamed, counted = Held(), Held()
    headers = {"Content-Type": "application/json"}
    accepts = {**headers, "Accept": "multipart/mixed;subscriptionSpec=1.0, application/json"}
    post = api.http.post
    first = asyncio.create_task(post("/graphql", content=streamed, headers=accepts))
    await asyncio.wait_for(streamed.started.wait(), 10)  # the guard is reading its body
    assert foreground.in_flight == 0
    second = asyncio.create_task(post("/graphql", content=counted, headers=headers))
    await asyncio.wait_for(counted.started.wait(), 10)
    assert foreground.in_flight == 1  # the second only
    counted.released.set()
    await asyncio.wait_for(second, 10)
    assert foreground.in_flight == 0
    streamed.released.set()
    assert (await asyncio.wait_for(first, 10)).status_code == 200


async def _true(condition: bool) -> bool | None:
    return condition or None
