"""Subscriptions seen through the Python `gql` client over graphql-transport-ws."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.live.conftest import LiveServer

SUBSCRIBE = """
    subscription($networkId: ID) {
      nodeStatusChanged(networkId: $networkId) {
        id name role status statusReason ip
        pod { name phase ready ip restartCount reason message startedAt }
        network { name }
      }
    }
"""
CREATE = """
mutation($name: String!) {
  networkCreate(input: {name: $name}) {
    network { id } operation { id } userErrors { code message }
  }
}
"""


async def post(live: LiveServer, query: str, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {live.token}"}
    async with httpx.AsyncClient(headers=headers) as http:
        response = await http.post(live.http_url, json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def transport(live: LiveServer) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=live.ws_url,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {live.token}"},
    )


async def test_subscriber_sees_the_coordinator_come_up_in_order(live: LiveServer) -> None:
    created = await post(live, CREATE, name="live")
    network_id = created["networkCreate"]["network"]["id"]
    seen: list[str] = []
    messages: list[dict[str, Any]] = []
    async with Client(transport=transport(live)) as session:

        async def follow() -> dict[str, Any]:
            request = GraphQLRequest(SUBSCRIBE, variable_values={"networkId": network_id})
            async for result in session.subscribe(request):
                node = result["nodeStatusChanged"]
                messages.append(node)
                seen.append(node["status"])
                if node["status"] == "RUNNING":
                    return node  # type: ignore[no-any-return]
            raise AssertionError("the subscription ended before RUNNING")

        node = await asyncio.wait_for(follow(), timeout=30)
    assert node["role"] == "COORDINATOR"
    assert node["network"] == {"name": "live"}
    assert node["pod"]["ready"] is True
    order = ["PENDING", "PROVISIONING", "STARTING", "RUNNING"]
    # The first message is the snapshot (any state); after it, states only move forward.
    positions = [order.index(s) for s in seen]
    assert positions == sorted(positions), seen
    assert seen[-1] == "RUNNING"
    # Every change is pushed (the status may stay STARTING while the pod moves on), but never
    # the same node state twice in a row (the selection holds every field a change can touch).
    assert all(a != b for a, b in itertools.pairwise(messages)), messages
