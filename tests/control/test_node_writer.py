"""Two writers of one node's row (the pod observer and the reconciler) cannot lose each other's
facts: the status is derived inside the transaction that writes it, revisions are strictly
increasing, and the history's timestamps follow its revisions. On both databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.config import load_settings
from app.control.node_writer import Apply, NodeWriter
from app.domain.enums import Consensus, NodeStatus, Role
from app.events.bus import Change, InProcessBus, NodeChange
from app.services.tenancy import create_token
from app.store.engine import queued_writers
from app.store.models import Node, NodeStatusChange
from tests.helpers import Writes, eventually


class Gate:
    """Holds the first writers until all ``parties`` have read the row (the interleaving that
    lost updates), then lets everyone pass. Where the database locks the row on read
    (PostgreSQL), a writer blocked on that lock counts as arrived: it cannot read until the
    holder commits, which is the point; so does, on SQLite, a writer waiting for its write turn
    (app/store/engine.py: one write transaction at a time)."""

    def __init__(
        self, parties: int, database_url: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.parties = parties
        self.arrived = 0
        self.opened = False
        self.database_url = database_url
        self.sessions = sessions

    async def _blocked(self) -> int:
        if not self.database_url.startswith("postgresql"):
            return queued_writers(self.sessions)
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                count = await connection.scalar(
                    text(
                        "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
                        " AND pid <> pg_backend_pid()"
                    )
                )
        finally:
            await engine.dispose()
        return int(count or 0)

    async def wait(self) -> None:
        if self.opened:
            return
        self.arrived += 1

        async def everyone() -> bool:
            self.opened = self.opened or self.arrived + await self._blocked() >= self.parties
            return self.opened

        await eventually(everyone, within=10)


class RecordingWriter(NodeWriter):
    """Keeps what it publishes, in order."""

    published: list[NodeChange]

    def publish(self, change: Change) -> None:
        if isinstance(change, NodeChange):  # the writer publishes network changes too
            self.__dict__.setdefault("published", []).append(change)


async def _new_node(sessions: async_sessionmaker[AsyncSession], database_url: str) -> str:
    settings = load_settings(database_url=database_url, namespace="writers")
    tenant, _, _ = await create_token(sessions, "writers", Role.ADMIN, settings)
    result = await Writes(sessions).create_network(tenant.id, "race", Consensus.RAFT)
    assert result.network is not None, result.errors
    async with sessions() as session:
        node_id = await session.scalar(select(Node.id).where(Node.network_id == result.network.id))
    assert node_id is not None
    return node_id


async def test_concurrent_writers_lose_nothing(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    node_id = await _new_node(sessions, database_url)
    writer = RecordingWriter(sessions, InProcessBus())
    async with sessions.begin() as session:  # objects made: the node is STARTING
        node = await session.get(Node, node_id)
        assert node is not None
        node.has_service = node.has_deployment = True
    gate = Gate(2, database_url, sessions)

    async def pod_running(_: AsyncSession, row: Node) -> bool:
        await gate.wait()
        row.pod_phase, row.pod_ready = "Running", True
        return True

    async def objects_seen(_: AsyncSession, row: Node) -> bool:
        await gate.wait()
        row.service_ip = "10.96.0.42"
        return True

    await asyncio.gather(writer.write(node_id, pod_running), writer.write(node_id, objects_seen))

    async with sessions() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        history = (
            await session.scalars(
                select(NodeStatusChange)
                .where(NodeStatusChange.node_id == node_id)
                .order_by(NodeStatusChange.id)
            )
        ).all()
    # Both facts landed, and the status is the one they give together.
    assert (node.pod_ready, node.service_ip) == (True, "10.96.0.42")
    assert node.status is NodeStatus.RUNNING, node.status
    revisions = [change.snapshot.revision for change in writer.published]
    assert revisions == [node.revision - 1, node.revision], revisions
    assert writer.published[-1].snapshot.status is NodeStatus.RUNNING
    times = [change.at for change in history]
    assert times == sorted(set(times)), history  # in order, no two at the same instant


async def test_many_writers_get_distinct_increasing_revisions(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    node_id = await _new_node(sessions, database_url)
    writer = RecordingWriter(sessions, InProcessBus())
    gate = Gate(6, database_url, sessions)

    def restarts(count: int) -> Apply:
        async def apply(_: AsyncSession, row: Node) -> bool:
            await gate.wait()
            row.restart_count = max(row.restart_count, count)
            return True

        return apply

    await asyncio.gather(*(writer.write(node_id, restarts(i)) for i in range(1, 7)))
    revisions = [change.snapshot.revision for change in writer.published]
    assert len(revisions) == len(set(revisions)), revisions
    async with sessions() as session:
        node = await session.get(Node, node_id)
        assert node is not None
    assert (node.restart_count, node.revision) == (6, max(revisions)), revisions
