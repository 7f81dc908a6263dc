"""A minimal graphql-transport-ws client, for tests that open many subscriptions at once.

The real-client tests use `gql` and the JavaScript `graphql-ws`; this one is small enough to
run a hundred of in one test.
"""

from __future__ import annotations

import json
from typing import Any

import websockets


class Subscriber:
    def __init__(
        self, url: str, query: str, variables: dict[str, Any] | None = None, token: str = ""
    ) -> None:
        self.url = url
        self.token = token
        self.query = query
        self.variables = variables or {}
        self.connection: websockets.ClientConnection | None = None

    async def __aenter__(self) -> Subscriber:
        self.connection = await websockets.connect(
            self.url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        )
        payload = {"Authorization": f"Bearer {self.token}"}
        await self.connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await self.connection.recv())
        assert ack["type"] == "connection_ack", ack
        message = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": self.query, "variables": self.variables},
        }
        await self.connection.send(json.dumps(message))
        return self

    async def next(self) -> dict[str, Any]:
        """The next `next` payload's data; fails on an error message."""
        assert self.connection is not None
        while True:
            message = json.loads(await self.connection.recv())
            if message["type"] == "ping":
                await self.connection.send(json.dumps({"type": "pong"}))
                continue
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message["payload"]
            data: dict[str, Any] = message["payload"]["data"]
            return data

    async def __aexit__(self, *_: object) -> None:
        if self.connection is not None:
            await self.connection.close()
