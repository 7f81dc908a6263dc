"""Subscriptions seen through the reference JavaScript client, graphql-ws, run by node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.live.conftest import LiveServer
from tests.live.test_network_events import ADD, DELETE_NETWORK, DELETE_NODE, EVENTS
from tests.live.test_subscriptions_gql import CREATE, post

SCRIPT = Path(__file__).parent / "js" / "subscribe.mjs"
QUERY = (
    "subscription($id: ID) { nodeStatusChanged(networkId: $id) { id name status pod { ready } } }"
)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed by ./dev setup")
async def test_graphql_ws_client_follows_a_node_to_running(live: LiveServer) -> None:
    created = await post(live, CREATE, name="jsclient")
    network_id = created["networkCreate"]["network"]["id"]
    process = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), live.ws_url, QUERY, json.dumps({"id": network_id}), "RUNNING",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "QAAS_TOKEN": live.token},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=40)
    assert process.returncode == 0, stderr.decode()
    results = [json.loads(line) for line in stdout.decode().splitlines()]
    nodes = [r["data"]["nodeStatusChanged"] for r in results]
    assert nodes[-1]["status"] == "RUNNING"
    assert nodes[-1]["pod"] == {"ready": True}
    assert {n["name"] for n in nodes} == {"coordinator"}


FOLLOW = Path(__file__).parent / "js" / "follow.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed by ./dev setup")
async def test_graphql_ws_client_sees_a_node_removed_and_the_network_deleted(
    live: LiveServer,
) -> None:
    created = await post(live, CREATE, name="jsevents")
    network_id = created["networkCreate"]["network"]["id"]
    process = await asyncio.create_subprocess_exec(
        "node", str(FOLLOW), live.ws_url, EVENTS, json.dumps({"networkId": network_id}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "QAAS_TOKEN": live.token},
    )  # fmt: skip
    assert process.stdout is not None
    events: list[dict[str, Any]] = []

    async def until(kind: str, name: str | None = None) -> None:
        assert process.stdout is not None
        while True:
            line = (await process.stdout.readline()).decode().strip()
            assert line, "the client stopped"
            assert line != "complete", f"completed before {kind}"
            events.append(json.loads(line)["data"]["networkChanged"])
            node = events[-1]["node"] or {}
            if events[-1]["kind"] == kind and name in (None, node.get("name")):
                return

    async with asyncio.timeout(60):  # a liveness bound: the sandbox does each step in seconds
        await until("NETWORK_UPDATED")  # the snapshot
        added = (await post(live, ADD, id=network_id))["nodeAdd"]
        await until("NODE_ADDED", "p")
        await post(live, DELETE_NODE, id=added["node"]["id"])
        await until("NODE_REMOVED", "p")
        await post(live, DELETE_NETWORK, id=network_id)
        await until("NETWORK_DELETED")
        rest, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert rest.decode().split() == ["complete"]  # nothing after the deletion
    assert events[0]["network"]["name"] == "jsevents"
    assert events[-1]["network"]["name"] == "jsevents"
