"""The pod observer remembers what it recorded for live nodes only: a node deleted through the
API (its pods gone, then its row) leaves no entry behind, so a long-lived leader's memory does
not grow with every node that ever came and went."""

from __future__ import annotations

from starlette.applications import Starlette

from app.control.loop import ControlLoop
from schema.ids import raw_id_of
from tests.api.queries import NODE_DELETE, add_node, create_network, nodes_of
from tests.helpers import GraphQLClient, eventually, holds

STATUS = "query($id: ID!) { node(id: $id) { ... on Node { status } } }"


async def test_a_deleted_node_leaves_nothing_in_the_observers_memory(
    app: Starlette, api: GraphQLClient
) -> None:
    control: ControlLoop = app.state.control
    network_id = (await create_network(api, "remembered"))["network"]["id"]
    peer = await add_node(api, network_id, "peer-1")
    raw = raw_id_of(peer["id"], "Node")
    assert raw is not None

    async def running() -> bool:
        return bool((await api.data(STATUS, id=peer["id"]))["node"]["status"] == "RUNNING")

    await eventually(running, within=30)
    assert raw in control.observer.recorded  # its pod was recorded

    deleted = (await api.data(NODE_DELETE, id=peer["id"]))["nodeDelete"]
    assert deleted["userErrors"] == []

    async def gone() -> bool:
        return peer["id"] not in {node["id"] for node in await nodes_of(api, network_id)}

    await eventually(gone, within=30)
    await holds(lambda: raw not in control.observer.recorded)
