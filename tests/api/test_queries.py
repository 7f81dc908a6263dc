"""Reads: Relay pagination of networks and nodes, node(id), network(id | name)."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest

from schema.ids import to_global_id
from tests.api.queries import (
    NETWORK_NODES,
    NODE_BY_ID,
    add_node,
    coordinator_id,
    create_network,
)
from tests.helpers import GraphQLClient

NETWORKS = """
query($first: Int = 20, $after: String) {
  networks(first: $first, after: $after) {
    edges { cursor node { id name } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
  }
}
"""
NETWORK_BY = "query($id: ID, $name: String) { network(id: $id, name: $name) { id name } }"
BOUNDS = re.compile(r"\b1\b.*\b100\b")


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


async def top_level_error(api: GraphQLClient, document: str, **variables: Any) -> str:
    """The message of the one top-level error (the HTTP status is 200, never 500)."""
    body = await api.execute(document, **variables)
    (error,) = body["errors"]
    message: str = error["message"]
    assert message != "Unexpected error."
    return message


async def test_networks_page_through_oldest_first(api: GraphQLClient) -> None:
    names = [f"net-{i}" for i in range(5)]
    for name in names:
        await create_network(api, name)
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = (await api.data(NETWORKS, first=2, after=after))["networks"]
        pages += 1
        assert page["totalCount"] == 5
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        edges = page["edges"]
        assert [e["cursor"] for e in edges][:1] == [page["pageInfo"]["startCursor"]]
        assert edges[-1]["cursor"] == page["pageInfo"]["endCursor"]
        seen += [e["node"]["name"] for e in edges]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == names
    assert pages == 3


async def test_networks_empty_page(api: GraphQLClient) -> None:
    page = (await api.data(NETWORKS))["networks"]
    assert page["edges"] == []
    assert page["totalCount"] == 0
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_networks_first_is_bounded(api: GraphQLClient, first: int) -> None:
    assert BOUNDS.search(await top_level_error(api, NETWORKS, first=first))


@pytest.mark.parametrize("first", [0, 101])
async def test_nodes_first_is_bounded(api: GraphQLClient, first: int) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    message = await top_level_error(api, NETWORK_NODES, id=network_id, first=first)
    assert BOUNDS.search(message)


@pytest.mark.parametrize("after", ["garbage", "!!!", cursor_of("no separator")])
async def test_networks_refuse_a_garbage_cursor(api: GraphQLClient, after: str) -> None:
    assert "cursor" in await top_level_error(api, NETWORKS, after=after)


async def test_networks_refuse_a_cursor_with_a_naive_timestamp(api: GraphQLClient) -> None:
    after = cursor_of(f"2024-01-01T00:00:00|{uuid.uuid4()}")
    assert "cursor" in await top_level_error(api, NETWORKS, after=after)


async def test_nodes_refuse_a_garbage_cursor(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    assert "cursor" in await top_level_error(api, NETWORK_NODES, id=network_id, after="garbage")


async def test_nodes_page_through_oldest_first(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    for name in ("peer-1", "peer-2"):
        await add_node(api, network_id, name)
    seen: list[str] = []
    after: str | None = None
    while True:
        data = await api.data(NETWORK_NODES, id=network_id, first=1, after=after)
        page = data["network"]["nodes"]
        assert page["totalCount"] == 3
        seen += [edge["node"]["name"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["coordinator", "peer-1", "peer-2"]


async def test_node_resolves_every_kind_of_global_id(api: GraphQLClient) -> None:
    created = await create_network(api, "acme")
    network_id = created["network"]["id"]
    peer_id = (await add_node(api, network_id, "peer"))["id"]
    expected = {
        network_id: "Network",
        await coordinator_id(api, network_id): "Node",
        peer_id: "Node",
        created["operation"]["id"]: "Operation",
    }
    for global_id, type_name in expected.items():
        node = (await api.data(NODE_BY_ID, id=global_id))["node"]
        assert node == {"__typename": type_name, "id": global_id}


UNKNOWN_IDS = {
    "garbage": "garbage",
    "empty": "",
    "no type": base64.b64encode(b"no-colon").decode(),
    "unknown type": to_global_id("Widget", str(uuid.uuid4())),
    "unknown network": to_global_id("Network", str(uuid.uuid4())),
    "unknown node": to_global_id("Node", str(uuid.uuid4())),
    "unknown operation": to_global_id("Operation", str(uuid.uuid4())),
    "overlong raw id": to_global_id("Network", "x" * 200),
}


@pytest.mark.parametrize("global_id", UNKNOWN_IDS.values(), ids=UNKNOWN_IDS.keys())
async def test_node_is_null_for_garbage_or_unknown_ids(api: GraphQLClient, global_id: str) -> None:
    assert (await api.data(NODE_BY_ID, id=global_id))["node"] is None


async def test_lookups_with_a_nul_character_find_nothing(api: GraphQLClient) -> None:
    assert (await api.data(NODE_BY_ID, id=to_global_id("Network", "\x00")))["node"] is None
    assert (await api.data(NETWORK_BY, id=to_global_id("Network", "\x00")))["network"] is None
    assert (await api.data(NETWORK_BY, name="acme\x00"))["network"] is None


async def test_network_by_id_or_by_name(api: GraphQLClient) -> None:
    network = (await create_network(api, "acme"))["network"]
    assert (await api.data(NETWORK_BY, id=network["id"]))["network"] == network
    assert (await api.data(NETWORK_BY, name="acme"))["network"] == network
    assert (await api.data(NETWORK_BY, name="globex"))["network"] is None
    assert (await api.data(NETWORK_BY, name="x" * 100))["network"] is None
    unknown = to_global_id("Network", str(uuid.uuid4()))
    assert (await api.data(NETWORK_BY, id=unknown))["network"] is None
    node_id = await coordinator_id(api, network["id"])
    assert (await api.data(NETWORK_BY, id=node_id))["network"] is None


@pytest.mark.parametrize("arguments", [{}, {"id": "x", "name": "acme"}])
async def test_network_wants_exactly_one_of_id_and_name(
    api: GraphQLClient, arguments: dict[str, str]
) -> None:
    message = await top_level_error(api, NETWORK_BY, **arguments)
    assert "`id`" in message
    assert "`name`" in message
