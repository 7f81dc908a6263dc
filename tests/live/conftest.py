"""A real uvicorn server on a loopback port, for clients that speak WebSocket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn

from app.cli.websocket import uvicorn_config
from app.config import Settings
from app.sandbox.processes import free_ports
from app.server import create_app
from tests.conftest import CallerTenant


class LiveServer:
    def __init__(self, settings: Settings, token: str, port: int | None = None) -> None:
        self.token = token  # the test tenant's ADMIN token
        self.port = port or free_ports(1)[0]  # a port: a restart on the same address
        self.app = create_app(settings)
        # As `qaas serve` runs it.
        config = uvicorn_config(self.app, "127.0.0.1", self.port, settings.header_timeout_seconds)
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("uvicorn stopped during start-up")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


# Seconds: the `impatient` server's deadlines for a request's head and for its body.
IMPATIENT = 0.5


@pytest.fixture
async def impatient(
    settings: Settings, sessions: object, tenant: CallerTenant
) -> AsyncIterator[LiveServer]:
    """A live server whose QAAS_HEADER_TIMEOUT_SECONDS and QAAS_BODY_TIMEOUT_SECONDS are
    ``IMPATIENT``."""
    deadlines = {"header_timeout_seconds": IMPATIENT, "body_timeout_seconds": IMPATIENT}
    server = LiveServer(settings.model_copy(update=deadlines), tenant.token)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def live(
    settings: Settings, sessions: object, tenant: CallerTenant
) -> AsyncIterator[LiveServer]:
    server = LiveServer(settings, tenant.token)
    await server.start()
    yield server
    await server.stop()


async def raw_connection(server: LiveServer) -> socket.socket:
    """A plain socket connected to ``server``, for clients that misbehave on purpose. Raw, not
    asyncio's streams: a stream raises a reset ahead of the bytes it already holds, where the
    kernel hands over what arrived before the reset first."""
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return sock


async def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection, bounded: a server that kept
    it open fails the test here rather than hanging it. A server that closes while the client is
    still sending resets the connection (uvicorn does not linger); what arrived before the reset
    is the answer all the same."""
    loop = asyncio.get_running_loop()
    answer = b""
    async with asyncio.timeout(10):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return answer
            if not chunk:
                return answer
            answer += chunk
