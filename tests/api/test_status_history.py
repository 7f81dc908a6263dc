"""Node.statusHistory(last:) is bounded, and the bound is applied by the database: a node
whose history grew long costs `last` rows, not all of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.domain.enums import NodeStatus
from app.store.models import NodeStatusChange
from schema.ids import from_global_id
from tests.api.queries import add_node, create_network, nodes_of
from tests.helpers import GraphQLClient, eventually

HISTORY = """
query($id: ID!, $last: Int!) {
  network(id: $id) { nodes { edges { node { id statusHistory(last: $last) { status reason } } } } }
}
"""
STATUSES = "query($id: ID!) { network(id: $id) { nodes { edges { node { id status } } } } }"
ROWS = 500


def local_id(global_id: str) -> str:
    found = from_global_id(global_id)
    assert found is not None
    return found[1]


class Fetched:
    """What the app's engine sent that touched the history, and how many rows became objects."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.rows = 0

    def statement(self, *args: Any) -> None:
        if "node_status_changes" in args[2]:
            self.statements.append(args[2])

    def row(self, *args: Any) -> None:
        self.rows += 1


@pytest.fixture
def fetched(app: Starlette) -> Iterator[Fetched]:
    seen = Fetched()
    engine = app.state.startup.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen.statement)
    event.listen(NodeStatusChange, "load", seen.row)
    yield seen
    event.remove(NodeStatusChange, "load", seen.row)
    event.remove(engine, "before_cursor_execute", seen.statement)


async def running_network(api: GraphQLClient) -> str:
    network_id: str = (await create_network(api, "hist"))["network"]["id"]
    await add_node(api, network_id, "p1")

    async def all_running() -> bool:
        edges = (await api.data(STATUSES, id=network_id))["network"]["nodes"]["edges"]
        return len(edges) == 2 and all(e["node"]["status"] == "RUNNING" for e in edges)

    await eventually(all_running, within=60, every=0.25)  # the reconciler has said its piece
    return network_id


async def test_history_is_limited_in_sql_per_node(
    api: GraphQLClient, sessions: async_sessionmaker[AsyncSession], fetched: Fetched
) -> None:
    network_id = await running_network(api)
    node_ids = [local_id(n["id"]) for n in await nodes_of(api, network_id)]
    async with sessions.begin() as session:
        statuses = [NodeStatus.FAILED, NodeStatus.RUNNING]
        session.add_all(
            NodeStatusChange(node_id=node_id, status=statuses[i % 2], reason=f"{node_id}:{i}")
            for i in range(ROWS)
            for node_id in node_ids
        )
    fetched.statements.clear()
    data = await api.data(HISTORY, id=network_id, last=5)
    for edge in data["network"]["nodes"]["edges"]:
        node_id = local_id(edge["node"]["id"])
        history = edge["node"]["statusHistory"]
        assert [c["reason"] for c in history] == [f"{node_id}:{i}" for i in range(ROWS - 5, ROWS)]
        assert [c["status"] for c in history] == ["RUNNING", "FAILED"] * 2 + ["RUNNING"]
    (statement,) = fetched.statements  # one statement for both nodes
    assert "row_number" in statement.lower()
    assert fetched.rows == 2 * 5  # the database returned only what was asked for


@pytest.mark.parametrize("last", [0, -1, 101])
async def test_last_out_of_bounds_is_a_clear_error(api: GraphQLClient, last: int) -> None:
    network_id: str = (await create_network(api, "hist"))["network"]["id"]
    body = await api.execute(HISTORY, id=network_id, last=last)
    messages = {e["message"] for e in body["errors"]}
    assert messages == {f"`last` must be between 1 and 100, not {last}"}
