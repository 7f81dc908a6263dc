"""What the PostgreSQL event bus (app/events/pg_bus.py) asks of the database: the NOTIFY sent in
a writing transaction, the nodes' current views by id, every node's revision (to catch up after
a gap), the same two for networks (their views by id; every network's id, tenant and whether it
is marked for deletion), and a NOTIFY of its own (the reconciler's wake-up call).

A NOTIFY issued inside a transaction is delivered by PostgreSQL only when that transaction
commits (and never if it rolls back), in commit order; so a listener hears of a node's revision
exactly once it is visible to a read.

Example::

    await node_feed.announce(work.session, "qaas_nodes", payload)  # sent with the commit
    feed = NodeFeed(sessions)
    views = await feed.views(["node-id", ...])     # one read for a burst of changes
    rows = await feed.revisions()                  # (node, network, tenant, revision) of all
    networks = await feed.networks(["network-id"])  # NetworkViews of those that exist
    states = await feed.network_states()            # (network, tenant, deleting) of all
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.enums import Desired
from app.store import reads
from app.store.models import Network, Node
from app.store.read_models import NetworkView, NodeView


async def announce(session: AsyncSession, channel: str, payload: str) -> None:
    """NOTIFY ``channel`` with ``payload`` when the session's transaction commits."""
    await session.execute(select(func.pg_notify(channel, payload)))


async def announce_if_shared(session: AsyncSession, channel: str, payload: str) -> None:
    """``announce`` on PostgreSQL, where other replicas may listen; nothing on SQLite (one
    process serves it, and it has no NOTIFY)."""
    if session.get_bind().dialect.name == "postgresql":
        await announce(session, channel, payload)


class NodeFeed:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def views(self, node_ids: Sequence[str]) -> list[NodeView]:
        """The current views of those of ``node_ids`` that exist (any tenant's)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Node, Network).join(Network).where(Node.id.in_(list(node_ids)))
            )
            return [NodeView.of(node, network) for node, network in rows]

    async def revisions(self) -> list[tuple[str, str, str, int]]:
        """(node id, network id, tenant id, revision) of every node, read in one statement."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Node.id, Node.network_id, Network.tenant_id, Node.revision).join(Network)
            )
            return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def networks(self, network_ids: Sequence[str]) -> list[NetworkView]:
        """The current views of those of ``network_ids`` that exist (any tenant's)."""
        async with self.sessions() as session:
            rows = list(
                await session.execute(
                    select(*reads.NETWORK_VIEW_COLUMNS).where(Network.id.in_(list(network_ids)))
                )
            )
            return await reads.network_views(session, rows)

    async def network_states(self) -> list[tuple[str, str, bool]]:
        """(network id, tenant id, marked for deletion) of every network, in one statement."""
        async with self.sessions() as session:
            rows = await session.execute(select(Network.id, Network.tenant_id, Network.desired))
            return [(row[0], row[1], row[2] is Desired.ABSENT) for row in rows]

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` now (its own transaction)."""
        async with self.sessions.begin() as session:
            await announce(session, channel, payload)
