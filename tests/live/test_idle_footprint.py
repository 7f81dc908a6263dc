"""What an idle subscriber's socket holds in the server (issue 14; figures: bench/memory.py).

The lean WebSocket protocol (app/cli/websocket.py) lets go of the handshake once it is
answered, and the graphql-transport-ws handler of its connection-init timeout task, while the
subscription keeps working: it still receives changes and ends cleanly.
"""

from __future__ import annotations

from typing import Any

from websockets.http11 import Request

from app.cli.websocket import LeanWebSocketProtocol
from tests.helpers import eventually
from tests.live.conftest import LiveServer
from tests.live.test_subscription_lifecycle import BY_NETWORK, bus_of
from tests.live.test_subscriptions_gql import CREATE, post
from tests.live.wsclient import Subscriber


def sockets(live: LiveServer) -> list[LeanWebSocketProtocol]:
    return [c for c in live.server.server_state.connections if isinstance(c, LeanWebSocketProtocol)]


async def test_an_idle_subscriber_keeps_no_handshake(live: LiveServer) -> None:
    created = await post(live, CREATE, name="idle")
    network_id = created["networkCreate"]["network"]["id"]
    async with Subscriber(live.ws_url, BY_NETWORK, {"id": network_id}, live.token) as one:
        snapshot = await one.next()
        assert snapshot["nodeStatusChanged"]["id"]
        [socket] = sockets(live)
        assert socket.handshake_complete
        assert not hasattr(socket, "request")
        assert not hasattr(socket, "response")
        parser: Any = socket.conn.parser  # the `websockets` parser: a suspended generator
        [request] = [e for e in parser.gi_frame.f_locals.values() if isinstance(e, Request)]
        assert not request.headers  # the parser's reference holds no header map
        assert socket.queue.empty()

    async def gone() -> bool:
        return not sockets(live) and bus_of(live).subscribers == 0

    await eventually(gone, within=5)
