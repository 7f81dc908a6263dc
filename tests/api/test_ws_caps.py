"""WebSocket caps: per client address at the socket's accept, per token at connection_init;
over either, closed with 4429 and why. A connection that ends, however it ends, frees its place."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.enums import Role
from app.services.tenancy import create_token
from tests.conftest import CallerTenant
from tests.helpers import eventually
from tests.live import conftest as live_fixtures
from tests.live.conftest import LiveServer

live = live_fixtures.live  # the live server fixture, used here

PER_TOKEN = 2
PER_ADDRESS = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"max_ws_per_token": PER_TOKEN, "max_ws_per_address": PER_ADDRESS}
    )


@pytest.fixture
async def viewer(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, tenant: CallerTenant
) -> str:
    _, _, secret = await create_token(sessions, tenant.name, Role.VIEWER, settings, "viewer")
    return secret


def _connect(live: LiveServer) -> websockets.connect:
    return websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )


async def _init(connection: websockets.ClientConnection, secret: str) -> tuple[int, str] | None:
    """Send connection_init; None when acknowledged, else the close code and reason."""
    payload = {"Authorization": f"Bearer {secret}"}
    try:
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        answer = json.loads(await connection.recv())
    except websockets.ConnectionClosed:
        return connection.close_code or 1006, connection.close_reason or ""
    assert answer["type"] == "connection_ack", answer
    return None


@contextlib.asynccontextmanager
async def _opened(live: LiveServer, secret: str) -> AsyncIterator[websockets.ClientConnection]:
    async with _connect(live) as connection:
        assert await _init(connection, secret) is None
        yield connection


async def _refused_at_accept(live: LiveServer) -> tuple[int, str] | None:
    """Open a socket and wait for the server's first word: the close, if it refuses at once."""
    async with _connect(live) as connection:
        try:
            await connection.recv()  # nothing comes before connection_init unless refused
        except websockets.ConnectionClosed:
            return connection.close_code or 1006, connection.close_reason or ""
    return None


async def test_the_token_cap_refuses_one_more_and_frees_a_place_on_close(
    live: LiveServer, tenant: CallerTenant
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(_opened(live, tenant.token))
        await stack.enter_async_context(_opened(live, tenant.token))
        async with _connect(live) as third:
            code, reason = await _init(third, tenant.token) or (0, "")
        assert code == 4429
        assert reason == f"too many WebSocket connections with this token (at most {PER_TOKEN})"

        await first.close()

        async def admitted() -> bool:
            async with _connect(live) as again:
                return await _init(again, tenant.token) is None

        await eventually(admitted)


async def test_the_address_cap_refuses_at_accept_and_frees_a_place_on_close(
    live: LiveServer, tenant: CallerTenant, viewer: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(_opened(live, tenant.token))
        await stack.enter_async_context(_opened(live, tenant.token))
        await stack.enter_async_context(_opened(live, viewer))  # another token, same address
        code, reason = await _refused_at_accept(live) or (0, "")
        assert code == 4429
        assert reason == f"too many WebSocket connections from 127.0.0.1 (at most {PER_ADDRESS})"

        await first.close()

        async def admitted() -> bool:
            async with _connect(live) as again:
                return await _init(again, viewer) is None

        await eventually(admitted)


async def test_refused_and_abandoned_connections_free_their_places(
    live: LiveServer, tenant: CallerTenant, viewer: str
) -> None:
    for _ in range(2 * PER_ADDRESS):  # each refused by the server: a bad token
        async with _connect(live) as connection:
            assert await _init(connection, "qaas_not-a-token") == (4403, "invalid token")
    for _ in range(2 * PER_ADDRESS):  # each closed by the client before connection_init
        async with _connect(live):
            pass

    async def all_admitted() -> bool:
        async with contextlib.AsyncExitStack() as stack:
            for secret in (tenant.token, tenant.token, viewer):  # the address's every place
                connection = await stack.enter_async_context(_connect(live))
                if await _init(connection, secret) is not None:
                    return False
        return True

    await eventually(all_admitted)
