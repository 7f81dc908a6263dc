"""Tokens end when they end, on open WebSockets too: revoked (by tokenRevoke here, or in the
database by `qaas token revoke` in another process), expired, or gone with their tenant, the
connection sends nothing more and is closed with 4403 and the reason within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.enums import Role
from app.events.pg_bus import PostgresBus
from app.services.tenancy import create_token
from app.store.models import ApiToken, utcnow
from schema.ids import to_global_id
from tests.conftest import CallerTenant
from tests.helpers import holds
from tests.live import conftest as live_fixtures
from tests.live.conftest import LiveServer

live = live_fixtures.live  # the live server fixture, used here

EVERY_NODE = "subscription { nodeStatusChanged { id status } }"
CREATE = 'mutation { networkCreate(input: {name: "n"}) { network { id } userErrors { code } } }'
ADD = (
    'mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: "late"}) '
    "{ node { id } userErrors { code } } }"
)
REVOKE = "mutation($id: ID!) { tokenRevoke(input: {id: $id}) { userErrors { code } } }"
# The Done-when of issue 13: closed within 5 s of the revocation (recheck 2 s + 1 s, margin).
CLOSED_WITHIN = 5.0


@pytest.fixture
def recheck() -> float:
    """QAAS_TOKEN_RECHECK_SECONDS: the default unless a test parametrizes it."""
    return 2.0


@pytest.fixture
def settings(settings: Settings, recheck: float) -> Settings:
    return settings.model_copy(update={"token_recheck_seconds": recheck})


async def _post(live: LiveServer, token: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post(live.http_url, json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


class Socket:
    """A subscriber that keeps every message it receives and how its connection closed."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.nodes: list[str] = []  # node ids, in the order they came
        self.statuses: list[str] = []  # and their statuses
        self.closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if message["type"] == "next":
                    node = message["payload"]["data"]["nodeStatusChanged"]
                    self.nodes.append(node["id"])
                    self.statuses.append(node["status"])
        except websockets.ConnectionClosed:
            pass  # how it closed is below
        finally:
            code, reason = self.connection.close_code, self.connection.close_reason
            self.closed.set_result((code or 1006, reason or ""))


@pytest.fixture
async def member(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, tenant: CallerTenant
) -> tuple[str, str]:
    """A MEMBER token of the test tenant: its id and secret."""
    _, row, secret = await create_token(sessions, tenant.name, Role.MEMBER, settings, "member")
    return row.id, secret


@pytest.fixture
async def network(live: LiveServer, tenant: CallerTenant) -> str:
    created = (await _post(live, tenant.token, CREATE))["networkCreate"]
    assert created["userErrors"] == []
    return str(created["network"]["id"])


@contextlib.asynccontextmanager
async def _subscribe(live: LiveServer, secret: str) -> AsyncIterator[Socket]:
    async with websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as connection:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {secret}"}}
        await connection.send(json.dumps(init))
        assert json.loads(await connection.recv())["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": EVERY_NODE}}
        await connection.send(json.dumps(subscribe))
        socket = Socket(connection)
        try:
            await holds(lambda: bool(socket.nodes))  # the snapshot's coordinator
            yield socket
        finally:
            socket.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await socket.reader


@pytest.fixture
async def socket(live: LiveServer, member: tuple[str, str], network: str) -> AsyncIterator[Socket]:
    async with _subscribe(live, member[1]) as opened:
        yield opened


@pytest.mark.parametrize("recheck", [60.0])  # no sweep meanwhile: tokenRevoke must close
async def test_token_revoke_closes_its_sockets_before_answering(
    live: LiveServer, tenant: CallerTenant, member: tuple[str, str], network: str, socket: Socket
) -> None:
    revoked = await _post(live, tenant.token, REVOKE, id=to_global_id("ApiToken", member[0]))
    assert revoked["tokenRevoke"]["userErrors"] == []
    seen = len(socket.nodes)
    added = (await _post(live, tenant.token, ADD, id=network))["nodeAdd"]
    assert added["userErrors"] == []
    async with asyncio.timeout(CLOSED_WITHIN):
        code, reason = await socket.closed
    assert (code, reason) == (4403, "token revoked")
    assert len(socket.nodes) == seen  # nothing after the revocation, the new node least of all
    assert added["node"]["id"] not in socket.nodes


def _cli_revoke(settings: Settings, token_id: str) -> asyncio.Future[Any]:
    """`qaas token revoke` in a process of its own, as an operator would."""
    env = {**os.environ, "QAAS_DATABASE_URL": settings.database_url, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "app.cli.parser", "token", "revoke", token_id]
    started = asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    return asyncio.ensure_future(started)


@pytest.mark.parametrize("form", ["listed", "graphql"])  # as `token list` prints it, or its ID
async def test_a_token_revoked_by_another_process_closes_its_sockets(
    live: LiveServer,
    settings: Settings,
    tenant: CallerTenant,
    member: tuple[str, str],
    network: str,
    socket: Socket,
    form: str,
) -> None:
    token_id = member[0] if form == "listed" else to_global_id("ApiToken", member[0])
    process = await _cli_revoke(settings, token_id)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    async with asyncio.timeout(CLOSED_WITHIN):
        code, reason = await socket.closed
    assert (code, reason) == (4403, "token revoked")


@pytest.mark.parametrize(
    ("change", "reason"), [("expire", "token expired"), ("delete", "token no longer exists")]
)
async def test_an_expired_or_deleted_token_closes_its_sockets(
    live: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    member: tuple[str, str],
    socket: Socket,
    change: str,
    reason: str,
) -> None:
    # Once the coordinator runs no more events come: only the recheck can notice the change.
    await holds(lambda: "RUNNING" in socket.statuses, within=30)
    async with sessions.begin() as session:
        if change == "expire":
            past = utcnow() - datetime.timedelta(seconds=1)
            await session.execute(
                update(ApiToken).where(ApiToken.id == member[0]).values(expires_at=past)
            )
        else:  # as when its tenant is deleted (the tokens go with it)
            await session.execute(delete(ApiToken).where(ApiToken.id == member[0]))
    async with asyncio.timeout(CLOSED_WITHIN):
        assert await socket.closed == (4403, reason)


@pytest.mark.parametrize("recheck", [60.0])  # no sweep meanwhile: delivery itself checks
async def test_nothing_is_delivered_after_the_token_expires(
    live: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
    member: tuple[str, str],
    network: str,
) -> None:
    soon = utcnow() + datetime.timedelta(seconds=2)
    async with sessions.begin() as session:
        await session.execute(
            update(ApiToken).where(ApiToken.id == member[0]).values(expires_at=soon)
        )
    async with _subscribe(live, member[1]) as socket:
        await holds(lambda: utcnow() > soon, within=5)
        seen = len(socket.nodes)
        added = (await _post(live, tenant.token, ADD, id=network))["nodeAdd"]
        assert added["userErrors"] == []
        async with asyncio.timeout(CLOSED_WITHIN):
            assert await socket.closed == (4403, "token expired")
        assert len(socket.nodes) == seen


async def _ended_at_once(socket: Socket, server: LiveServer, secret: str) -> None:
    """The socket closed for the revocation, and ``server`` refuses the token: it did not answer
    from what it remembered of it."""
    async with asyncio.timeout(CLOSED_WITHIN):
        code, reason = await socket.closed
    assert (code, reason) == (4403, "token revoked")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as http:
        refused = await http.post(server.http_url, json={"query": "{ viewer { role } }"})
    assert refused.status_code == 401


@pytest.fixture
async def other(
    live: LiveServer, settings: Settings, tenant: CallerTenant, database_url: str
) -> AsyncIterator[LiveServer]:
    """A second replica beside ``live``, on the same PostgreSQL database."""
    if not database_url.startswith("postgresql"):
        pytest.skip("one replica on SQLite")
    server = LiveServer(settings, tenant.token)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("recheck", [60.0])  # no sweep meanwhile: only the bus can tell
async def test_a_token_revoked_on_one_replica_ends_at_once_on_the_other(
    live: LiveServer,
    other: LiveServer,
    tenant: CallerTenant,
    member: tuple[str, str],
    network: str,
) -> None:
    """The other replica remembered the token (a request answered) and holds its WebSocket;
    tokenRevoke on the first ends both there within seconds, not after
    QAAS_TOKEN_RECHECK_SECONDS."""
    await _post(other, member[1], "{ viewer { role } }")  # remembered there from now on
    async with _subscribe(other, member[1]) as socket:
        revoked = await _post(live, tenant.token, REVOKE, id=to_global_id("ApiToken", member[0]))
        assert revoked["tokenRevoke"]["userErrors"] == []
        await _ended_at_once(socket, other, member[1])


@pytest.mark.parametrize("recheck", [60.0])
async def test_a_token_revoked_by_the_cli_ends_at_once_on_postgresql(
    live: LiveServer,
    settings: Settings,
    member: tuple[str, str],
    socket: Socket,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no NOTIFY: the recheck finds it (above)")
    await _post(live, member[1], "{ viewer { role } }")  # remembered from now on
    process = await _cli_revoke(settings, member[0])
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    await _ended_at_once(socket, live, member[1])


@pytest.mark.parametrize("recheck", [60.0])
async def test_a_revocation_missed_while_the_bus_reconnects_is_caught_on_reconnecting(
    live: LiveServer,
    other: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
    member: tuple[str, str],
    network: str,
) -> None:
    """The other replica's listening connection is killed; the revocation's NOTIFY comes while
    it is down and is lost. On reconnecting, it checks the tokens it remembers and its
    sockets' tokens at once, not at the next sweep (60 s here)."""
    bus = other.app.state.deps.bus
    assert isinstance(bus, PostgresBus)
    await asyncio.wait_for(bus.connected.wait(), 10)
    bus.listener.retry_first_seconds = 2.0  # a gap long enough to revoke in
    await _post(other, member[1], "{ viewer { role } }")  # remembered there from now on
    async with _subscribe(other, member[1]) as socket:
        async with sessions() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": bus.listener_pid})  # fmt: skip
        await holds(lambda: not bus.connected.is_set())
        revoked = await _post(live, tenant.token, REVOKE, id=to_global_id("ApiToken", member[0]))
        assert revoked["tokenRevoke"]["userErrors"] == []
        assert not bus.connected.is_set()  # the NOTIFY came in the gap
        await _ended_at_once(socket, other, member[1])
