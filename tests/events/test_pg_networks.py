"""Network changes on the PostgreSQL bus: two replicas (two buses) on one real database. A network
created by a mutation's unit of work on one replica is read by the other; one marked for
deletion is read by the other for its subscribers; its deletion by the removal code reaches them
with the last state read; a deletion that fell in a dropped listening connection arrives with
the catch-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.control.node_writer import NodeWriter
from app.control.removal import Removal
from app.domain.enums import Consensus, NetworkStatus, Role
from app.events.bus import Mailbox, NetworkChange, NodeChange
from app.events.pg_bus import PostgresBus
from app.services import networks
from app.services.results import commit_unless_refused
from app.services.tenancy import create_token
from app.store import desired
from app.store.models import Network, Node
from app.store.node_feed import NodeFeed
from app.store.read_models import NodeView
from app.store.unit import UnitOfWork
from schema.mutations import announced
from tests.events.replicas import two_buses
from tests.helpers import Writes, holds

SETTINGS = load_settings(database_url="sqlite+aiosqlite:///unused.db", namespace="bus")


@pytest.fixture
async def replicas(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    async with two_buses(database_url, NodeFeed(sessions), NodeFeed(sessions)) as buses:
        yield buses


async def _restarted(_: AsyncSession, row: Node) -> bool:
    row.restart_count = 1
    return True


async def _next(mailbox: Mailbox) -> NodeChange | NetworkChange:
    return await asyncio.wait_for(mailbox.get(), 10)


async def _network(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str, str]:
    """(tenant, network, its coordinator node), made by the create service (not announced)."""
    tenant, _, _ = await create_token(sessions, "bus", Role.ADMIN, SETTINGS)
    result = await Writes(sessions).create_network(tenant.id, "relay", Consensus.RAFT)
    assert result.network is not None, result.errors
    async with sessions() as session:
        (node_id,) = [node.id for node in await desired.nodes_of(session, result.network.id)]
    return tenant.id, result.network.id, node_id


async def _mark_for_deletion(bus: PostgresBus, sessions: async_sessionmaker[AsyncSession],
                             tenant_id: str, network_id: str) -> None:  # fmt: skip
    """What the networkDelete mutation does on ``bus``'s replica (its unit of work, announced)."""
    change = announced(bus, lambda work: networks.delete_network(work, tenant_id, network_id))
    result = await commit_unless_refused(sessions, change)
    assert not result.errors, result.errors


async def _remove(writer: NodeWriter, network_id: str, node_id: str) -> None:
    """The removal code once the node's objects are gone: the node's row, then the network's."""
    async with UnitOfWork.begin(writer.sessions) as work:
        found = await desired.node_with_network(work.session, node_id)
        assert found is not None
        node, network = found
        gone = NodeChange(node_id, network_id, network.tenant_id, NodeView.of(node, network), True)
        await desired.delete_node(work.session, node_id)
        await writer.announce(work.session, gone)
        work.after_commit(lambda: writer.publish(gone))
    async with writer.sessions() as session:
        row = await session.get(Network, network_id)
        assert row is not None
    await Removal(writer.sessions, writer, SETTINGS).remove_network_if_empty(row)


async def test_a_network_deleted_on_one_replica_reaches_the_other_with_its_last_state(
    sessions: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    tenant_id, network_id, node_id = await _network(sessions)
    async with two.subscribe(tenant_id=tenant_id, networks=True) as there:
        await _mark_for_deletion(one, sessions, tenant_id, network_id)
        marked = await _next(there)
        assert isinstance(marked, NetworkChange)
        assert not marked.deleted
        assert marked.snapshot.status is NetworkStatus.DELETING  # read by "two"
        assert two.networks.reads == 1
        await _remove(NodeWriter(sessions, one), network_id, node_id)
        removed = await _next(there)
        assert isinstance(removed, NodeChange)
        assert removed.deleted
        gone = await _next(there)
    assert isinstance(gone, NetworkChange)
    assert (gone.network_id, gone.tenant_id, gone.deleted) == (network_id, tenant_id, True)
    assert gone.snapshot is marked.snapshot  # the last state it delivered


async def test_a_network_deletion_missed_while_disconnected_arrives_with_the_catch_up(
    sessions: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    tenant_id, network_id, node_id = await _network(sessions)
    async with two.subscribe(tenant_id=tenant_id, networks=True) as there:
        writer = NodeWriter(sessions, one)
        await writer.write(node_id, _restarted)  # seen by both: "two" knows the node exists
        assert isinstance(await _next(there), NodeChange)
        await _mark_for_deletion(one, sessions, tenant_id, network_id)
        marked = await _next(there)
        assert isinstance(marked, NetworkChange)
        assert two.listener_pid is not None
        async with sessions() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": two.listener_pid})  # fmt: skip
        await holds(lambda: not two.connected.is_set())
        heard = two.notifications
        await _remove(writer, network_id, node_id)  # in its gap
        await asyncio.wait_for(two.connected.wait(), 15)
        changes = [await _next(there), await _next(there)]
        assert two.notifications == heard  # none of it was heard: it came from the catch-up
    assert two.reconnects == 1
    node, network = changes
    assert isinstance(node, NodeChange)
    assert node.deleted
    assert node.node_id == node_id
    assert isinstance(network, NetworkChange)
    assert network.deleted
    assert network.network_id == network_id
    assert network.snapshot is marked.snapshot


async def test_a_network_the_other_replica_never_read_is_deleted_without_a_state(
    sessions: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    tenant_id, network_id, node_id = await _network(sessions)
    async with two.subscribe(tenant_id=tenant_id, networks=True) as there:
        await _remove(NodeWriter(sessions, one), network_id, node_id)
        assert isinstance(await _next(there), NodeChange)
        gone = await _next(there)
    # Its subscribers tell the state they were told (schema/network_events.py).
    assert isinstance(gone, NetworkChange)
    assert gone.deleted
    assert gone.snapshot is None


async def test_a_network_created_on_one_replica_is_read_by_the_other(
    sessions: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    tenant, _, _ = await create_token(sessions, "bus", Role.ADMIN, SETTINGS)
    async with two.subscribe(tenant_id=tenant.id, networks=True) as there:
        create = announced(one, lambda work: networks.create_network(
            work, tenant.id, "fresh", Consensus.RAFT, 300.0, None))  # fmt: skip
        result = await commit_unless_refused(sessions, create)
        assert result.network is not None, result.errors
        created = await _next(there)
    assert isinstance(created, NetworkChange)
    assert not created.deleted
    assert created.snapshot.id == result.network.id
    assert created.snapshot.name == "fresh"
    assert two.networks.reads == 1


async def test_a_deletion_never_carries_a_state_older_than_a_change_heard_unread(
    sessions: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    tenant, _, _ = await create_token(sessions, "bus", Role.ADMIN, SETTINGS)
    async with two.subscribe(tenant_id=tenant.id, networks=True) as first:
        create = announced(one, lambda work: networks.create_network(
            work, tenant.id, "stale", Consensus.RAFT, 300.0, None))  # fmt: skip
        result = await commit_unless_refused(sessions, create)
        assert result.network is not None, result.errors
        assert isinstance(await _next(first), NetworkChange)  # "two" read it then
    network_id = result.network.id
    heard = two.notifications
    await _mark_for_deletion(one, sessions, tenant.id, network_id)  # nobody on "two" wants it
    await holds(lambda: two.notifications > heard)
    async with sessions() as session:
        (node_id,) = [node.id for node in await desired.nodes_of(session, network_id)]
    async with two.subscribe(tenant_id=tenant.id, networks=True) as there:
        await _remove(NodeWriter(sessions, one), network_id, node_id)
        assert isinstance(await _next(there), NodeChange)
        gone = await _next(there)
    assert isinstance(gone, NetworkChange)
    assert gone.deleted
    # Not the state read at its creation: the subscriber tells what its snapshot showed.
    assert gone.snapshot is None
