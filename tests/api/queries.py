"""GraphQL documents and small helpers the API tests share."""

from __future__ import annotations

from typing import Any

import pytest

from app.control.removal import Removal
from tests.helpers import GraphQLClient

USER_ERRORS = "userErrors { field message code }"

NETWORK_CREATE = f"""
mutation($name: String!) {{
  networkCreate(input: {{name: $name}}) {{
    network {{ id name }}
    operation {{ id }}
    {USER_ERRORS}
  }}
}}
"""

NODE_ADD = f"""
mutation($networkId: ID!, $name: String!) {{
  nodeAdd(input: {{networkId: $networkId, name: $name}}) {{
    node {{ id name }}
    operation {{ id }}
    {USER_ERRORS}
  }}
}}
"""

NETWORK_JOIN = f"""
mutation($name: String!, $ip: String!, $nodeName: String! = "peer") {{
  networkJoin(input: {{name: $name, coordinatorIp: $ip, nodeName: $nodeName}}) {{
    network {{ id name }}
    node {{ id name }}
    operation {{ id }}
    {USER_ERRORS}
  }}
}}
"""

NODE_DELETE = f"""
mutation($id: ID!) {{ nodeDelete(input: {{id: $id}}) {{ operation {{ id }} {USER_ERRORS} }} }}
"""

NETWORK_DELETE = f"""
mutation($id: ID!) {{ networkDelete(input: {{id: $id}}) {{ operation {{ id }} {USER_ERRORS} }} }}
"""

NETWORK_COUNT = "{ networks { totalCount } }"

NETWORK_NODES = """
query($id: ID!, $first: Int = 20, $after: String) {
  network(id: $id) {
    nodes(first: $first, after: $after) {
      edges { cursor node { id name role } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      totalCount
    }
  }
}
"""

NODE_BY_ID = "query($id: ID!) { node(id: $id) { __typename id } }"


async def create_network(api: GraphQLClient, name: str) -> dict[str, Any]:
    """A new network's payload; fails the test on any error."""
    payload: dict[str, Any] = (await api.data(NETWORK_CREATE, name=name))["networkCreate"]
    assert payload["userErrors"] == []
    return payload


async def add_node(api: GraphQLClient, network_id: str, name: str) -> dict[str, Any]:
    """A new peer; fails the test on any error."""
    payload = (await api.data(NODE_ADD, networkId=network_id, name=name))["nodeAdd"]
    assert payload["userErrors"] == []
    node: dict[str, Any] = payload["node"]
    return node


async def refused(api: GraphQLClient, document: str, **variables: Any) -> dict[str, Any]:
    """The one user error a mutation answers with; it must create and start nothing."""
    data = await api.data(document, **variables)  # never a top-level error
    (payload,) = data.values()
    for key in ("network", "node", "operation"):
        assert payload.get(key) is None, payload
    (error,) = payload["userErrors"]
    assert set(error) == {"field", "message", "code"}
    assert error["message"]
    result: dict[str, Any] = error
    return result


async def network_count(api: GraphQLClient) -> int:
    count: int = (await api.data(NETWORK_COUNT))["networks"]["totalCount"]
    return count


async def nodes_of(api: GraphQLClient, network_id: str) -> list[dict[str, Any]]:
    data = await api.data(NETWORK_NODES, id=network_id, first=100)
    return [edge["node"] for edge in data["network"]["nodes"]["edges"]]


async def coordinator_id(api: GraphQLClient, network_id: str) -> str:
    (coordinator,) = [n for n in await nodes_of(api, network_id) if n["role"] == "COORDINATOR"]
    node_id: str = coordinator["id"]
    return node_id


def hold_deletions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep whatever is marked for deletion in the being-deleted state for the whole test.

    The reconciler would otherwise remove the rows within a pass or two, racing the test.
    """

    async def never_remove(self: Removal, *args: object) -> None:
        return None

    monkeypatch.setattr(Removal, "remove_node", never_remove)
