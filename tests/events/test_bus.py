"""The event bus: filtered fan-out, and bounded mailboxes that keep the latest state per node."""

from __future__ import annotations

import asyncio

from app.events.bus import InProcessBus, Mailbox, NetworkChange, NodeChange


def change(node: str, network: str = "n1", state: str = "s") -> NodeChange:
    return NodeChange(node_id=node, network_id=network, tenant_id="t", snapshot=state)


def network_change(network: str, state: str = "s", tenant: str = "t") -> NetworkChange:
    return NetworkChange(network_id=network, tenant_id=tenant, snapshot=state)


async def next_node(mailbox: Mailbox) -> NodeChange:
    got = await mailbox.get()
    assert isinstance(got, NodeChange)
    return got


async def test_subscribers_get_only_what_they_asked_for() -> None:
    bus = InProcessBus()
    async with (
        bus.subscribe(network_id="n1") as network,
        bus.subscribe(node_id="b") as node,
        bus.subscribe() as everything,
    ):
        bus.publish(change("a", "n1"))
        bus.publish(change("b", "n2"))
        assert (await next_node(network)).node_id == "a"
        assert len(network) == 0
        assert (await next_node(node)).node_id == "b"
        assert [(await next_node(everything)).node_id for _ in range(2)] == ["a", "b"]


async def test_a_slow_subscriber_gets_the_latest_state_of_each_node() -> None:
    bus = InProcessBus()
    async with bus.subscribe() as slow:
        for i in range(1000):
            bus.publish(change("a", state=f"a{i}"))
            bus.publish(change("b", state=f"b{i}"))
        assert len(slow) == 2  # not 2,000
        first, second = await slow.get(), await slow.get()
        assert {first.snapshot, second.snapshot} == {"a999", "b999"}
        assert slow.dropped == 1998


async def test_a_mailbox_holds_at_most_its_limit_of_nodes() -> None:
    bus = InProcessBus(mailbox_limit=10)
    async with bus.subscribe() as slow:
        for i in range(25):
            bus.publish(change(f"node-{i}"))
        assert len(slow) == 10
        assert (await next_node(slow)).node_id == "node-15"  # the oldest were let go first


async def test_leaving_unsubscribes_and_waiting_is_woken_by_publish() -> None:
    bus = InProcessBus()
    async with bus.subscribe() as mailbox:
        assert bus.subscribers == 1
        waiter = asyncio.create_task(next_node(mailbox))
        await asyncio.sleep(0)
        bus.publish(change("a"))
        assert (await asyncio.wait_for(waiter, 1)).node_id == "a"
    assert bus.subscribers == 0


async def test_a_subscriber_never_gets_another_tenants_changes() -> None:
    """The tenant is checked on top of every other filter: a change of tenant B reaches none of
    tenant A's subscribers, whether A asked for everything (the subscription without arguments
    relies on this alone), a network or a node, even where B's ids match what A asked for."""
    bus = InProcessBus()
    async with (
        bus.subscribe(tenant_id="a") as everything,
        bus.subscribe(network_id="n1", tenant_id="a") as network,
        bus.subscribe(node_id="x", tenant_id="a") as node,
    ):
        theirs = NodeChange(node_id="x", network_id="n1", tenant_id="b", snapshot="b's")
        bus.publish(theirs)
        assert (len(everything), len(network), len(node)) == (0, 0, 0)
        ours = NodeChange(node_id="x", network_id="n1", tenant_id="a", snapshot="a's")
        bus.publish(ours)
        for mailbox in (everything, network, node):
            assert await mailbox.get() is ours
            assert len(mailbox) == 0


async def test_network_changes_go_only_to_who_asked_for_them_in_publishing_order() -> None:
    bus = InProcessBus()
    async with (
        bus.subscribe(network_id="n1", networks=True) as n1,
        bus.subscribe(tenant_id="t", networks=True) as everything,
        bus.subscribe(tenant_id="other", networks=True) as other,
        bus.subscribe(network_id="n1") as nodes_only,
    ):
        bus.publish(network_change("n1", "updated"))
        bus.publish(change("a", "n1", "a-removed"))
        bus.publish(network_change("n2"))
        bus.publish(network_change("n1", "deleted"))  # after a's removal: delivered after it
        assert [(await n1.get()).snapshot for _ in range(2)] == ["a-removed", "deleted"]
        assert len(n1) == 0
        assert len(everything) == 3
        assert len(other) == 0
        assert (await next_node(nodes_only)).node_id == "a"
        assert len(nodes_only) == 0
