"""Subscriptions are bounded per connection, cleaned up on disconnect, completed on delete."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from app.config import Settings
from app.events.bus import InProcessBus
from app.events.pg_bus import PostgresBus
from tests.helpers import eventually
from tests.live.conftest import LiveServer
from tests.live.test_subscriptions_gql import CREATE, post
from tests.live.wsclient import Subscriber

BY_NETWORK = "subscription($id: ID) { nodeStatusChanged(networkId: $id) { id status } }"
BY_NODE = "subscription($id: ID) { nodeStatusChanged(nodeId: $id) { id status } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_subscriptions": 2})


def auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.token}"}


def bus_of(live: LiveServer) -> InProcessBus | PostgresBus:
    bus = live.app.state.deps.bus
    assert isinstance(bus, InProcessBus | PostgresBus)
    return bus


async def test_one_connection_may_hold_only_so_many_subscriptions(live: LiveServer) -> None:
    async with websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": auth(live)}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for op in ("1", "2", "3"):
            payload = {"query": BY_NETWORK, "variables": {}}
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (message["id"], message["type"]) == ("3", "error")
        assert "limit" in message["payload"][0]["message"].lower()


async def test_disconnected_subscribers_leave_the_bus(live: LiveServer) -> None:
    created = await post(live, CREATE, name="leavers")
    network_id = created["networkCreate"]["network"]["id"]
    subscribers = [
        Subscriber(live.ws_url, BY_NETWORK, {"id": network_id}, live.token) for _ in range(5)
    ]
    for subscriber in subscribers:
        await subscriber.__aenter__()
        await subscriber.next()
    assert bus_of(live).subscribers == 5
    for subscriber in subscribers:
        await subscriber.__aexit__()

    async def all_gone() -> bool:
        return bus_of(live).subscribers == 0

    await eventually(all_gone, within=5)


async def test_a_node_subscription_completes_when_the_node_is_deleted(live: LiveServer) -> None:
    created = await post(live, CREATE, name="short")
    network_id = created["networkCreate"]["network"]["id"]
    add = 'mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: "p"}) { node { id } } }'
    node_id = (await post(live, add, id=network_id))["nodeAdd"]["node"]["id"]
    messages: list[dict[str, Any]] = []
    async with websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": auth(live)}))
        await ws.recv()
        payload = {"query": BY_NODE, "variables": {"id": node_id}}
        await ws.send(json.dumps({"id": "n", "type": "subscribe", "payload": payload}))
        messages.append(json.loads(await ws.recv()))  # the snapshot
        delete = "mutation($id: ID!) { nodeDelete(input: {id: $id}) { userErrors { code } } }"
        await post(live, delete, id=node_id)
        while messages[-1]["type"] != "complete":
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
    statuses = [m["payload"]["data"]["nodeStatusChanged"]["status"] for m in messages[:-1]]
    assert "DELETING" in statuses
