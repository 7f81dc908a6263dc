"""A real uvicorn server on a loopback port, for clients that speak WebSocket."""

from __future__ import annotations

import asyncio
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
        config = uvicorn_config(self.app, "127.0.0.1", self.port)  # as `qaas serve` runs
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


@pytest.fixture
async def live(
    settings: Settings, sessions: object, tenant: CallerTenant
) -> AsyncIterator[LiveServer]:
    server = LiveServer(settings, tenant.token)
    await server.start()
    yield server
    await server.stop()
