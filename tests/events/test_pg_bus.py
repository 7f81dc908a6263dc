"""The PostgreSQL event bus: two replicas (two buses, each with its own listening connection and
its own reads) on one real database. A change written through one reaches the other's
subscribers once committed, in revision order, latest state winning; a deletion too; a replica
whose listening connection was killed catches up from the database; a wake-up call crosses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.control.node_writer import Apply, NodeWriter
from app.domain.enums import Consensus, Role
from app.events.bus import Change, Mailbox, NodeChange
from app.events.pg_bus import KICKED_MOST, PostgresBus
from app.metrics import REGISTRY
from app.services.tenancy import create_token, revoke_token
from app.services.tenant_admin import delete_tenant
from app.store import desired
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from app.store.models import Node
from app.store.node_feed import NodeFeed
from app.store.read_models import NodeView
from app.store.unit import UnitOfWork
from tests.conftest import DATABASES, empty_database
from tests.events.replicas import two_buses
from tests.helpers import Writes, holds


@dataclass
class Net:
    tenant_id: str
    network_id: str
    node_ids: list[str]


@pytest.fixture
async def pg(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> async_sessionmaker[AsyncSession]:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    return sessions


class GatedFeed(NodeFeed):
    """The real reads, held at a gate while ``hold`` is set (to let changes pile up)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.hold = False
        self.opened = asyncio.Event()
        self.waiting = 0
        self.calls = 0

    async def views(self, node_ids: Sequence[str]) -> list[NodeView]:
        self.calls += 1
        if self.hold:
            self.waiting += 1
            await self.opened.wait()
        return await super().views(node_ids)


@pytest.fixture
async def replicas(
    pg: async_sessionmaker[AsyncSession], database_url: str
) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    async with two_buses(database_url, GatedFeed(pg), GatedFeed(pg)) as buses:
        yield buses


async def _network(sessions: async_sessionmaker[AsyncSession], nodes: int = 1) -> Net:
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db", namespace="bus")
    tenant, _, _ = await create_token(sessions, "bus", Role.ADMIN, settings)
    writes = Writes(sessions)
    result = await writes.create_network(tenant.id, "relay", Consensus.RAFT)
    assert result.network is not None, result.errors
    for i in range(1, nodes):
        added = await writes.add_node(tenant.id, result.network.id, f"extra-{i}")
        assert not added.errors, added.errors
    async with sessions() as session:
        ids = list(await session.scalars(select(Node.id).where(
            Node.network_id == result.network.id).order_by(Node.name)))  # fmt: skip
    return Net(tenant.id, result.network.id, ids)


def restarts(count: int) -> Apply:
    async def apply(_: AsyncSession, row: Node) -> bool:
        row.restart_count = count
        return True

    return apply


class LatePublisher(NodeWriter):
    """Publishes after its commit only when told to (``release``)."""

    held: list[Change]

    def publish(self, change: Change) -> None:
        self.__dict__.setdefault("held", []).append(change)

    def release(self) -> None:
        for change in self.__dict__.pop("held", []):
            super().publish(change)


async def _delete(writer: NodeWriter, net: Net, node_id: str) -> None:
    """What app/control/removal.py does once a node's objects are gone."""
    async with UnitOfWork.begin(writer.sessions) as work:
        found = await desired.node_with_network(work.session, node_id)
        assert found is not None
        gone = NodeChange(node_id, net.network_id, net.tenant_id, NodeView.of(*found), True)
        await desired.delete_node(work.session, node_id)
        await writer.announce(work.session, gone)
        work.after_commit(lambda: writer.publish(gone))


async def _next(mailbox: Mailbox) -> NodeChange:
    change = await asyncio.wait_for(mailbox.get(), 10)
    assert isinstance(change, NodeChange)
    return change


async def test_a_change_written_on_one_replica_reaches_the_other_once(
    pg: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    net = await _network(pg)
    node_id = net.node_ids[0]
    writer = LatePublisher(pg, one)
    async with (
        one.subscribe(network_id=net.network_id) as here,
        two.subscribe(network_id=net.network_id) as there,
    ):
        written = await writer.write(node_id, restarts(3))
        assert written is not None
        heard = await _next(there)
        # Its own notification overtakes the writer's publish (a race it may lose in life).
        await holds(lambda: one.notifications >= 1)
        writer.release()
        assert (heard.node_id, heard.snapshot.revision, heard.snapshot.restart_count) == (
            node_id, written.revision, 3)  # fmt: skip
        assert (await _next(here)).snapshot.revision == written.revision
        # A change written through the other replica: "one" reads it; its reads are in the
        # order heard, so a read of its own change would have come first.
        back = await NodeWriter(pg, two).write(node_id, restarts(4))
        assert back is not None
        assert (await _next(here)).snapshot.revision == back.revision
        assert (await _next(there)).snapshot.revision == back.revision
        feed = one.source
        assert isinstance(feed, GatedFeed)
        assert feed.calls == 1  # the writer's replica never read its own change
        assert len(here) == 0
        assert len(there) == 0


async def test_a_burst_is_one_read_of_the_latest_state_in_revision_order(
    pg: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    feed = two.source
    assert isinstance(feed, GatedFeed)
    net = await _network(pg)
    node_id = net.node_ids[0]
    writer = NodeWriter(pg, one)
    async with two.subscribe(node_id=node_id) as there:
        feed.hold = True
        first = await writer.write(node_id, restarts(1))
        assert first is not None
        await holds(lambda: feed.waiting == 1)  # its read is under way, held
        for count in range(2, 21):
            await writer.write(node_id, restarts(count))
        await holds(lambda: two.notifications >= 20)
        feed.hold = False
        feed.opened.set()
        seen = [await _next(there)]
        while seen[-1].snapshot.restart_count != 20:
            seen.append(await _next(there))
    revisions = [change.snapshot.revision for change in seen]
    assert revisions == sorted(set(revisions)), revisions
    # One read: the held one returned the latest state, which covers the nineteen changes
    # heard while it was held (a second read would have started before we got here).
    assert feed.calls == 1


async def test_a_deletion_reaches_the_other_replica_with_the_last_state(
    pg: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    one, two = replicas
    net = await _network(pg)
    node_id = net.node_ids[0]
    writer = NodeWriter(pg, one)
    async with two.subscribe(network_id=net.network_id) as there:
        await writer.write(node_id, restarts(5))
        last = await _next(there)
        await _delete(writer, net, node_id)
        gone = await _next(there)
    assert gone.deleted
    assert gone.node_id == node_id
    assert gone.snapshot is last.snapshot


async def test_a_replica_that_lost_its_connection_catches_up(
    pg: async_sessionmaker[AsyncSession],
    replicas: tuple[PostgresBus, PostgresBus],
    database_url: str,
) -> None:
    one, two = replicas
    net = await _network(pg, nodes=3)
    changed, deleted, unchanged = net.node_ids
    writer = NodeWriter(pg, one)
    async with two.subscribe(network_id=net.network_id) as there:
        await writer.write(deleted, restarts(1))  # seen by both: "two" knows it exists
        assert (await _next(there)).node_id == deleted
        assert two.listener_pid is not None
        async with pg() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": two.listener_pid})  # fmt: skip
        await holds(lambda: not two.connected.is_set())
        # Down (for /readyz, once for longer than QAAS_UNREADY_AFTER_SECONDS), and why.
        assert "its listening connection was lost" in (two.problem(0) or "")
        assert two.problem(3600) is None  # a short outage is not one
        heard = two.notifications
        # Meanwhile (it waits at least a second before reconnecting):
        for count in range(1, 6):
            final = await writer.write(changed, restarts(count))
        assert final is not None
        await _delete(writer, net, deleted)
        states: dict[str, NodeChange] = {}
        while deleted not in states or states.get(changed) is None or (
                states[changed].snapshot.restart_count != 5):  # fmt: skip
            change = await _next(there)
            states[change.node_id] = change
        assert two.notifications == heard  # none of it was heard: it came from the catch-up
    assert two.reconnects == 1
    assert two.problem(0) is None  # listening again, and caught up
    assert states[changed].snapshot.revision == final.revision
    assert states[changed].snapshot.restart_count == 5
    assert states[deleted].deleted
    assert unchanged not in states


async def test_a_wake_up_call_on_one_replica_wakes_the_other(
    replicas: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = replicas
    woken: dict[str, list[str | None]] = {"one": [], "two": []}
    one.on_kick.append(woken["one"].append)
    two.on_kick.append(woken["two"].append)
    heard = one.notifications
    one.kick()
    assert woken["one"] == [None]  # at once, locally
    await holds(lambda: woken["two"] == [None])
    await holds(lambda: one.notifications > heard)  # its own NOTIFY came back
    assert woken == {"one": [None], "two": [None]}  # and was not taken as another call


async def test_a_wake_up_call_names_the_networks_kicked_and_none_past_the_limit(
    replicas: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = replicas
    woken: list[str | None] = []
    two.on_kick.append(woken.append)
    one.kick("net-a")  # a mutation of one network: the other replica's pass may cover it only
    await holds(lambda: woken == ["net-a"])
    woken.clear()
    one.kick("net-c")  # a burst is one call, which names each network kicked
    one.kick("net-b")
    await holds(lambda: woken == ["net-b", "net-c"])
    woken.clear()
    for k in range(KICKED_MOST + 1):  # past the limit: one call naming none, a full pass
        one.kick(f"net-{k:03}")
    await holds(lambda: woken == [None])
    woken.clear()
    one.kick("net-b")
    one.kick()  # one that names none: a pass over everything, whatever else was named
    await holds(lambda: woken == [None])


def _reconnects_counted() -> float:
    return REGISTRY.get_sample_value("qaas_event_bus_reconnects_total") or 0.0


async def test_a_bus_started_before_its_database_is_ready_connects_once_it_is(
    tmp_path: Path,
) -> None:
    if "postgresql" not in DATABASES:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    async with empty_database("postgresql", tmp_path) as url:
        engine = make_engine(url)
        bus = PostgresBus(url, NodeFeed(make_sessionmaker(engine)), retry_first_seconds=0.05,
                          retry_max_seconds=0.2)  # fmt: skip
        counted = _reconnects_counted()
        await bus.start()
        try:
            # It can connect and LISTEN, but its catch-up cannot read: no tables yet.
            await holds(lambda: bus.reconnects >= 2)
            assert not bus.connected.is_set()
            problem = bus.problem(0) or ""
            assert "listening failed" in problem, problem
            assert "does not exist" in problem, problem
            assert _reconnects_counted() >= counted + 2  # /metrics
            await upgrade(url)
            await asyncio.wait_for(bus.connected.wait(), 10)
            assert bus.problem(0) is None
        finally:
            await bus.stop()
            await engine.dispose()


async def test_every_replica_is_told_of_a_token_revoked_or_deleted(
    pg: async_sessionmaker[AsyncSession], replicas: tuple[PostgresBus, PostgresBus]
) -> None:
    """On commit, and only then: the sender hears it too (it forgets, which is idempotent)."""
    heard: tuple[list[tuple[str, bool]], list[tuple[str, bool]]] = ([], [])
    for bus, told in zip(replicas, heard, strict=True):

        def note(token_id: str, deleted: bool, told: list[tuple[str, bool]] = told) -> None:
            told.append((token_id, deleted))

        bus.on_token_end.append(note)
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db", namespace="bus")
    tenant, kept, _ = await create_token(pg, "tokens", Role.ADMIN, settings)
    _, other, _ = await create_token(pg, "tokens", Role.MEMBER, settings)
    async with pg.begin() as session:
        await revoke_token(session, kept.id)
        await session.rollback()  # never committed: never told
    async with pg.begin() as session:
        await revoke_token(session, kept.id)
    await holds(lambda: heard == ([(kept.id, False)], [(kept.id, False)]))
    async with pg.begin() as session:
        await delete_tenant(session, tenant.name, force=False, keep_namespace="qaas")
    told = sorted([(kept.id, False), (kept.id, True), (other.id, True)])  # the rollback's: not
    await holds(lambda: sorted(heard[0]) == told and sorted(heard[1]) == told)
