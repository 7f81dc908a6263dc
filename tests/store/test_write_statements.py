"""What a mutation's one transaction sends: once it has started writing, it reads nothing more.

The change counter (app/store/changes.py) notes which tenant each flushed row belongs to; a
node's history entry names only the node, whose tenant is known from the node flushed just
before it, so finding it must not cost a query inside the write transaction.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.control.node_writer import NodeWriter
from app.domain.enums import Consensus
from app.events.bus import InProcessBus
from app.services import networks, nodes
from app.services.results import commit_unless_refused
from app.store import desired
from app.store.changes import changes
from app.store.models import Node
from app.store.unit import UnitOfWork
from tests.conftest import CallerTenant


async def test_a_new_node_costs_no_owner_lookup(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> None:
    engine: AsyncEngine = sessions.kw["bind"]
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(" ".join(str(args[2]).split()).upper())

    ticket = changes.ticket()
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        made = await commit_unless_refused(sessions, partial(
            networks.create_network, tenant_id=tenant.id, name="acme", consensus=Consensus.RAFT,
            start_deadline=300.0))  # fmt: skip
        assert made.network is not None, made.errors
        create = sent[:]
        sent.clear()
        added = await commit_unless_refused(sessions, partial(
            nodes.add_node, tenant_id=tenant.id, network_id=made.network.id, name="peer-1",
            start_deadline=300.0))  # fmt: skip
        assert added.node is not None, added.errors
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    # The create: the tenant locked, counted and the name looked up in one UPDATE, then its
    # four rows (network, node, first history entry, operation); nothing else.
    # (SQLite's BEGIN IMMEDIATE is a statement; PostgreSQL's driver begins on its own.)
    kinds = [s.split()[0] for s in create if s != "BEGIN IMMEDIATE"]
    assert kinds == ["UPDATE", *["INSERT"] * 4], create
    for statements in (create, sent):
        first_insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT"))
        reads = [s for s in statements[first_insert:] if s.startswith("SELECT")]
        assert reads == [], statements
    # ... and both changes still count for the tenant, and for no one else.
    assert changes.changed_since(tenant.id, ticket)
    assert not changes.changed_since("no such tenant", ticket)


async def test_removing_a_node_counts_for_its_tenant_alone(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> None:
    """The reconciler's removal: a DELETE by node id, then the counts by network id, whose
    tenant is found from the values the statements run with."""
    made = await commit_unless_refused(sessions, partial(
        networks.create_network, tenant_id=tenant.id, name="acme", consensus=Consensus.RAFT,
        start_deadline=300.0))  # fmt: skip
    assert made.node is not None, made.errors
    assert made.network is not None
    ticket = changes.ticket()
    async with UnitOfWork.begin(sessions) as work:
        await desired.delete_node(work.session, made.node.id)
        assert await desired.delete_network_if_empty(work.session, made.network.id)
    assert changes.changed_since(tenant.id, ticket)
    assert not changes.changed_since("no such tenant", ticket)


async def test_a_control_loop_write_of_a_node_sends_one_select_and_one_update(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> None:
    """The node writer's transaction: the node read with its network in one SELECT, then one
    UPDATE that writes the new facts and the revision together (compare-and-set); the change
    counts for the tenant, whom the history entry's flush finds without a query, and what was
    written is what a later read finds."""
    made = await commit_unless_refused(sessions, partial(
        networks.create_network, tenant_id=tenant.id, name="acme", consensus=Consensus.RAFT,
        start_deadline=300.0))  # fmt: skip
    assert made.node is not None, made.errors
    engine: AsyncEngine = sessions.kw["bind"]
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(" ".join(str(args[2]).split()).upper())

    async def objects_made(_: AsyncSession, row: Node) -> bool:
        row.has_service = row.has_deployment = True
        row.service_ip = "10.96.0.7"
        return True

    writer = NodeWriter(sessions, InProcessBus())
    changes._owners.clear()  # as in a process just started: no owner known yet
    ticket = changes.ticket()
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        view = await writer.write(made.node.id, objects_made)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert view is not None
    assert view.status is not made.node.status  # the facts changed the status: history too
    kinds = [s.split()[0] for s in sent if s != "BEGIN IMMEDIATE"]
    # The node with its network; the node's unfinished operations (the status moves them on);
    # the node's facts and revision; the history entry; the operation.
    assert kinds == ["SELECT", "SELECT", "UPDATE", "INSERT", "UPDATE"], sent
    read_node, read_operations, write_node = sent[-5:-2]
    assert "JOIN NETWORKS" in read_node, sent
    assert "FROM OPERATIONS" in read_operations, sent
    assert write_node.startswith("UPDATE NODES SET"), sent
    assert "REVISION" in write_node, sent
    assert changes.changed_since(tenant.id, ticket)
    assert not changes.changed_since("no such tenant", ticket)
    async with sessions() as session:
        row = await session.get(Node, made.node.id)
        assert row is not None
        assert (row.has_service, row.has_deployment, row.service_ip) == (True, True, "10.96.0.7")
        assert (row.status, row.revision) == (view.status, view.revision)
        assert row.revision == made.node.revision + 1
