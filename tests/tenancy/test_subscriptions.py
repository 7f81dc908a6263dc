"""A subscription shows its caller's tenant only: the bus delivers no other tenant's changes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from kubernetes_asyncio import client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.enums import Role
from app.services.tenancy import create_token
from tests.conftest import CallerTenant
from tests.live.conftest import LiveServer
from tests.live.wsclient import Subscriber

# No network or node named: the caller's every node. Only the bus's tenant filter keeps other
# tenants' changes out of this one (the ids of a network or node would do it otherwise).
EVERY_NODE = "subscription { nodeStatusChanged { id status network { name } } }"
EVERY_NETWORK = "subscription { networkChanged { kind network { id } node { id status } } }"
CREATE = (
    "mutation($n: String!) { networkCreate(input: {name: $n}) "
    "{ network { id nodes { edges { node { id } } } } userErrors { code } } }"
)
ADD = (
    "mutation($id: ID!, $n: String!) { nodeAdd(input: {networkId: $id, name: $n}) "
    "{ node { id } userErrors { code } } }"
)


async def _post(live: LiveServer, token: str, query: str, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers) as http:
        response = await http.post(live.http_url, json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def _network(live: LiveServer, token: str, name: str) -> tuple[str, str]:
    """Creates a network; returns its id and its coordinator's."""
    created = (await _post(live, token, CREATE, n=name))["networkCreate"]
    assert created["userErrors"] == []
    network = created["network"]
    return network["id"], network["nodes"]["edges"][0]["node"]["id"]


async def _until_running(subscriber: Subscriber, node_id: str, seen: list[str]) -> None:
    """Reads ``subscriber`` until ``node_id`` is RUNNING, noting every node id it shows."""
    async with asyncio.timeout(60):  # a liveness bound; the sandbox starts a node in seconds
        while True:
            node = (await subscriber.next())["nodeStatusChanged"]
            seen.append(node["id"])
            if node["id"] == node_id and node["status"] == "RUNNING":
                return


async def _events_until_running(subscriber: Subscriber, node_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(60):  # a liveness bound, as above
        while True:
            events.append((await subscriber.next())["networkChanged"])
            node = events[-1]["node"] or {}
            if node.get("id") == node_id and node.get("status") == "RUNNING":
                return events


async def test_a_subscriber_never_sees_another_tenants_nodes(
    live: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: CallerTenant,
    kube_api: client.ApiClient,
) -> None:
    other = f"beta-{uuid.uuid4().hex[:6]}"
    row, _, theirs_token = await create_token(sessions, other, Role.MEMBER, settings)
    try:
        our_network, our_coordinator = await _network(live, tenant.token, "shared")
        ours_seen: list[str] = []
        theirs_seen: list[str] = []
        async with (
            Subscriber(live.ws_url, EVERY_NODE, token=tenant.token) as ours,
            Subscriber(live.ws_url, EVERY_NODE, token=theirs_token) as theirs,
            Subscriber(live.ws_url, EVERY_NETWORK, token=tenant.token) as our_events,
        ):
            first = (await asyncio.wait_for(ours.next(), 10))["nodeStatusChanged"]
            assert first["id"] == our_coordinator  # the snapshot: our one node

            # The other tenant's network of the same name comes up while we are subscribed:
            # every change of its coordinator is published on the bus we listen to.
            _, their_coordinator = await _network(live, theirs_token, "shared")
            await _until_running(theirs, their_coordinator, theirs_seen)

            # Then a node of ours: once we see it running, anything of theirs that reached our
            # mailbox (before it) would have been shown to us.
            added = (await _post(live, tenant.token, ADD, id=our_network, n="p1"))["nodeAdd"]
            assert added["userErrors"] == []
            our_peer = added["node"]["id"]
            await _until_running(ours, our_peer, ours_seen)
            # networkChanged of every network of ours: up to our peer's RUNNING (delivered in
            # publishing order), only our network and its nodes.
            events = await _events_until_running(our_events, our_peer)
        assert events[0]["kind"] == "NETWORK_UPDATED"  # the snapshot: our network
        assert {e["network"]["id"] for e in events} == {our_network}, events
        assert {e["node"]["id"] for e in events if e["node"]} <= {our_coordinator, our_peer}
        assert set(ours_seen) <= {our_coordinator, our_peer}, ours_seen
        assert their_coordinator not in ours_seen
        assert set(theirs_seen) == {their_coordinator}, theirs_seen
    finally:
        try:
            await client.CoreV1Api(kube_api).delete_namespace(row.namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise
