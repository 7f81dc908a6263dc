"""Every query, mutation and subscription against every kind of credential: a clear error or
an empty result, never another tenant's data, never a 500. Without a usable token an HTTP
request is refused with 401 before anything runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from starlette.applications import Starlette

from tests.helpers import GraphQLClient
from tests.live.conftest import LiveServer
from tests.tenancy.conftest import World, as_caller, error_code

Vars = Callable[[World], dict[str, Any]]
# name: (document, variables, is a mutation)
OPERATIONS: dict[str, tuple[str, Vars, bool]] = {
    "networks": ("{ networks { totalCount edges { node { id name } } } }", lambda w: {}, False),
    "network(id)": ("query($id: ID!) { network(id: $id) { id } }", lambda w: {"id": w.network_id}, False),
    "network(name)": ('{ network(name: "alpha") { id } }', lambda w: {}, False),
    "node(id)": ("query($id: ID!) { node(id: $id) { id } }", lambda w: {"id": w.node_id}, False),
    "operation": ("query($id: ID!) { operation(id: $id) { id } }", lambda w: {"id": w.operation_id}, False),
    "networks(filter)": ('{ networks(last: 5, filter: {nameContains: "alp"}, orderBy: NAME_DESC) { totalCount edges { node { id } } } }', lambda w: {}, False),
    "operations": ("query($id: ID) { operations(networkId: $id) { totalCount edges { node { id } } } }", lambda w: {"id": w.network_id}, False),
    "viewer": ("{ viewer { tenant { name } role } }", lambda w: {}, False),
    "tokens": ("{ tokens { totalCount edges { node { id } } } }", lambda w: {}, False),
    "networkCreate": ('mutation { networkCreate(input: {name: "mx"}) { network { id } userErrors { code } } }', lambda w: {}, True),
    "nodeAdd": ('mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: "p9"}) { node { id } userErrors { code } } }', lambda w: {"id": w.network_id}, True),
    "networkJoin": ('mutation { networkJoin(input: {name: "jx", coordinatorIp: "10.1.2.3"}) { node { id } userErrors { code } } }', lambda w: {}, True),
    "nodeDelete": ("mutation($id: ID!) { nodeDelete(input: {id: $id}) { operation { id } userErrors { code } } }", lambda w: {"id": w.node_id}, True),
    "networkDelete": ("mutation($id: ID!) { networkDelete(input: {id: $id}) { operation { id } userErrors { code } } }", lambda w: {"id": w.network_id}, True),
    "tokenCreate": ('mutation { tokenCreate(input: {name: "x", role: MEMBER}) { secret userErrors { code } } }', lambda w: {}, True),
    "tokenRevoke": ("mutation($id: ID!) { tokenRevoke(input: {id: $id}) { token { id } userErrors { code } } }", lambda w: {"id": w.token_id}, True),
}  # fmt: skip
UNAUTHENTICATED = ["none", "bad", "expired", "revoked"]
REFUSAL = {
    "none": "authentication required: send `Authorization: Bearer <token>`",
    "bad": "invalid token",
    "expired": "this token has expired",
    "revoked": "this token was revoked",
}
SUBSCRIBE = "subscription($id: ID) { nodeStatusChanged(networkId: $id) { id status } }"
NETWORK_EVENTS = (
    "subscription($id: ID) { networkChanged(networkId: $id) { kind network { id } node { id } } }"
)


async def call(
    app: Starlette, secret: str | None, name: str, world: World, status: int = 200
) -> dict[str, Any]:
    document, variables, _ = OPERATIONS[name]
    caller = as_caller(app, secret)
    async with caller.http:
        response = await caller.http.post(
            "/graphql", json={"query": document, "variables": variables(world)}
        )
    assert response.status_code == status, f"{name}: HTTP {response.status_code}"
    body: dict[str, Any] = response.json()
    return body


async def assert_alpha_untouched(api: GraphQLClient, world: World) -> None:
    data = await api.data(
        "query($id: ID!) { network(id: $id) { status nodes { totalCount } } tokens { edges { node { id revokedAt } } } }",
        id=world.network_id,
    )
    assert data["network"]["status"] != "DELETING"
    assert data["network"]["nodes"]["totalCount"] == 2
    assert all(edge["node"]["revokedAt"] is None for edge in data["tokens"]["edges"]
               if edge["node"]["id"] == world.token_id)  # fmt: skip


@pytest.mark.parametrize("kind", UNAUTHENTICATED)
async def test_no_usable_token_gets_unauthenticated_everywhere(
    app: Starlette, api: GraphQLClient, world: World, kind: str
) -> None:
    for name in OPERATIONS:
        body = await call(app, world.tokens[kind], name, world, status=401)
        assert error_code(body) == "UNAUTHENTICATED", (name, body)
        assert body["errors"][0]["message"] == REFUSAL[kind], (name, body)
        assert "data" not in body, (name, body)
    await assert_alpha_untouched(api, world)


async def test_another_tenants_token_sees_nothing_of_ours(
    app: Starlette, api: GraphQLClient, world: World
) -> None:
    secret = world.tokens["other-tenant"]
    seen: dict[str, Any] = {}
    for name in OPERATIONS:
        body = await call(app, secret, name, world)
        assert "errors" not in body, (name, body)
        seen[name] = body["data"]
    assert seen["networks"]["networks"] == {"totalCount": 0, "edges": []}
    assert seen["networks(filter)"]["networks"] == {"totalCount": 0, "edges": []}
    assert seen["operations"]["operations"] == {"totalCount": 0, "edges": []}
    assert seen["network(id)"]["network"] is None
    assert seen["network(name)"]["network"] is None
    assert seen["node(id)"]["node"] is None
    assert seen["operation"]["operation"] is None
    assert seen["viewer"]["viewer"]["tenant"]["name"] == world.other_tenant
    assert world.token_id not in json.dumps(seen["tokens"])
    for name in ("nodeAdd", "nodeDelete", "networkDelete", "tokenRevoke"):
        payload = next(iter(seen[name].values()))
        assert payload["userErrors"] == [{"code": "NOT_FOUND"}], (name, payload)
    # What it creates is its own, in its own tenant: same names, no clash with ours.
    assert seen["networkCreate"]["networkCreate"]["userErrors"] == []
    assert seen["tokenCreate"]["tokenCreate"]["secret"].startswith("qaas_")
    await assert_alpha_untouched(api, world)


async def test_a_viewer_reads_but_changes_nothing(
    app: Starlette, api: GraphQLClient, world: World
) -> None:
    for name, (_, _, mutation) in OPERATIONS.items():
        body = await call(app, world.tokens["viewer"], name, world)
        if mutation or name == "tokens":
            assert error_code(body) == "FORBIDDEN", (name, body)
            assert not any((body.get("data") or {}).values()), (name, body)
        else:
            assert "errors" not in body, (name, body)
    viewed = await call(app, world.tokens["viewer"], "network(id)", world)
    assert viewed["data"]["network"]["id"] == world.network_id
    await assert_alpha_untouched(api, world)


async def test_a_member_changes_networks_but_not_tokens(app: Starlette, world: World) -> None:
    for name in ("tokens", "tokenCreate", "tokenRevoke"):
        body = await call(app, world.tokens["member"], name, world)
        assert error_code(body) == "FORBIDDEN", (name, body)
    body = await call(app, world.tokens["member"], "nodeAdd", world)
    assert body["data"]["nodeAdd"]["userErrors"] == []


@pytest.fixture
async def live_world(live: LiveServer, world: World) -> World:
    return world


@pytest.mark.parametrize("kind", UNAUTHENTICATED)
async def test_a_websocket_without_a_usable_token_is_refused(
    live: LiveServer, live_world: World, kind: str
) -> None:
    secret = live_world.tokens[kind]
    payload = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


@pytest.mark.parametrize("document", [SUBSCRIBE, NETWORK_EVENTS])
@pytest.mark.parametrize(("kind", "sees"), [("other-tenant", False), ("viewer", True)])
async def test_subscriptions_see_only_their_tenant(
    live: LiveServer, live_world: World, kind: str, sees: bool, document: str
) -> None:
    payload = {"Authorization": f"Bearer {live_world.tokens[kind]}"}
    async with websockets.connect(
        live.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"query": document, "variables": {"id": live_world.network_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        message = json.loads(await ws.recv())
    if sees and document == NETWORK_EVENTS:
        assert message["type"] == "next"
        event = message["payload"]["data"]["networkChanged"]
        assert event == {"kind": "NETWORK_UPDATED", "network": {"id": live_world.network_id},
                         "node": None}  # fmt: skip
    elif sees:
        assert message["type"] == "next"
        assert message["payload"]["data"]["nodeStatusChanged"]["id"] in (
            live_world.node_id, live_world.coordinator_id,
        )  # fmt: skip
    else:
        assert message["type"] in ("error", "next"), message
        text = json.dumps(message)
        assert "no such network" in text
        assert live_world.node_id not in text
        assert live_world.coordinator_id not in text
