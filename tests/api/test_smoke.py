from __future__ import annotations

from tests.helpers import GraphQLClient, eventually

CREATE = """
mutation($name: String!) {
  networkCreate(input: {name: $name, consensus: IBFT}) {
    network { id name consensus status }
    operation { id kind state }
    userErrors { field message code }
  }
}
"""


async def test_network_create_returns_at_once_and_runs(api: GraphQLClient) -> None:
    data = await api.data(CREATE, name="acme")
    payload = data["networkCreate"]
    assert payload["userErrors"] == []
    assert payload["network"]["status"] == "PENDING"
    op_id = payload["operation"]["id"]

    async def succeeded() -> dict[str, object] | None:
        op = (await api.data("query($id: ID!) { operation(id: $id) { state message } }", id=op_id))[
            "operation"
        ]
        return op if op["state"] == "SUCCEEDED" else None

    await eventually(succeeded, within=20)
