"""networkChanged seen through the Python `gql` client: the snapshot first, then a node added
and removed, and the network's own deletion (the subscription then completes)."""

from __future__ import annotations

import asyncio
from typing import Any

from gql import Client, GraphQLRequest

from tests.live.conftest import LiveServer
from tests.live.test_subscriptions_gql import CREATE, post, transport

EVENTS = """
    subscription($networkId: ID) {
      networkChanged(networkId: $networkId) {
        kind network { id name status } node { id name status }
      }
    }
"""
ADD = """
mutation($id: ID!) {
  nodeAdd(input: {networkId: $id, name: "p"}) { node { id } userErrors { code } }
}
"""
DELETE_NODE = """
mutation($id: ID!) { nodeDelete(input: {id: $id, force: true}) { userErrors { code } } }
"""
DELETE_NETWORK = "mutation($id: ID!) { networkDelete(input: {id: $id}) { userErrors { code } } }"


class Events:
    """A subscription's events as they arrive, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.arrived = asyncio.Condition()
        self.completed = False

    async def follow(self, session: Any, request: GraphQLRequest) -> None:
        async for result in session.subscribe(request):
            async with self.arrived:
                self.seen.append(result["networkChanged"])
                self.arrived.notify_all()
        async with self.arrived:
            self.completed = True
            self.arrived.notify_all()

    async def wait_for(self, kind: str, name: str | None = None) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for event in self.seen:
                node = event["node"] or {}
                if event["kind"] == kind and (name is None or node.get("name") == name):
                    return event
            return None

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: found() is not None), 30)
        event = found()
        assert event is not None
        return event


async def test_a_node_added_and_removed_and_the_network_deleted(live: LiveServer) -> None:
    created = await post(live, CREATE, name="watched")
    network_id = created["networkCreate"]["network"]["id"]
    events = Events()
    async with Client(transport=transport(live)) as session:
        request = GraphQLRequest(EVENTS, variable_values={"networkId": network_id})
        follower = asyncio.create_task(events.follow(session, request))
        first = await events.wait_for("NETWORK_UPDATED")
        added = (await post(live, ADD, id=network_id))["nodeAdd"]
        assert added["userErrors"] == []
        node_id = added["node"]["id"]
        assert (await events.wait_for("NODE_ADDED", "p"))["node"]["id"] == node_id
        deleted = await post(live, DELETE_NODE, id=node_id)
        assert deleted["nodeDelete"]["userErrors"] == []
        removed = await events.wait_for("NODE_REMOVED", "p")
        assert (await post(live, DELETE_NETWORK, id=network_id))["networkDelete"] == {
            "userErrors": []
        }
        gone = await events.wait_for("NETWORK_DELETED")
        await asyncio.wait_for(follower, 30)  # the subscription completes after the deletion
    assert events.seen[0] == first  # the snapshot first
    assert first["network"]["id"] == network_id
    assert first["network"]["name"] == "watched"
    assert first["node"] is None
    assert removed["node"]["id"] == node_id
    assert removed["network"]["id"] == network_id
    assert gone["network"]["name"] == "watched"
    assert gone["node"] is None
    assert events.seen[-1] == gone  # nothing after the deletion
    kinds = [e["kind"] for e in events.seen]
    assert kinds.index("NODE_ADDED") < kinds.index("NODE_REMOVED") < kinds.index("NETWORK_DELETED")
    # Every node event after the peer's removal is about the coordinator going away.
    after = [e["node"]["name"] for e in events.seen[kinds.index("NODE_REMOVED") + 1 :] if e["node"]]
    assert set(after) <= {"coordinator"}
    assert "NODE_REMOVED" in kinds[kinds.index("NODE_REMOVED") + 1 :]  # the coordinator too


async def test_every_network_snapshot_first_then_a_new_one(live: LiveServer) -> None:
    ids = [(await post(live, CREATE, name=n))["networkCreate"]["network"]["id"] for n in "ab"]
    events = Events()
    async with Client(transport=transport(live)) as session:
        follower = asyncio.create_task(events.follow(session, GraphQLRequest(EVENTS)))
        async with events.arrived:
            await asyncio.wait_for(events.arrived.wait_for(lambda: len(events.seen) >= 2), 30)
        snapshot = events.seen[:2]
        new_id = (await post(live, CREATE, name="c"))["networkCreate"]["network"]["id"]
        created = await events.wait_for("NETWORK_CREATED")
        added = await events.wait_for("NODE_ADDED", "coordinator")
        follower.cancel()
    assert [(e["kind"], e["network"]["id"]) for e in snapshot] == [
        ("NETWORK_UPDATED", ids[0]), ("NETWORK_UPDATED", ids[1])
    ]  # fmt: skip
    assert created["network"]["id"] == new_id
    assert created["network"]["name"] == "c"
    assert added["network"]["id"] == new_id
    assert events.seen.index(created) < events.seen.index(added)
    assert {e["network"]["id"] for e in events.seen} == {*ids, new_id}
