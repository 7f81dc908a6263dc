"""Subscriptions seen through the reference JavaScript client, graphql-ws, run by node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.live.conftest import LiveServer
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
