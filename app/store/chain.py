"""What the chain probe reads (its targets) and what status derivation asks about a node's
network (whether another node of it has run).

Example::

    rows = await probe_targets(session)        # ready pods of nodes that should exist
    await another_node_ran(session, node)      # True: this node needs peers to be RUNNING
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import Consensus, Desired
from app.store.models import Network, Node


@dataclass(frozen=True)
class ProbeRow:
    node_id: str
    pod_ip: str
    consensus: Consensus
    pod_name: str | None
    restart_count: int


async def probe_targets(session: AsyncSession) -> list[ProbeRow]:
    """Nodes (and networks) that should exist whose pod is ready and has an IP."""
    rows = await session.execute(
        select(Node.id, Node.pod_ip, Network.consensus, Node.pod_name, Node.restart_count)
        .join(Network, Node.network_id == Network.id)
        .where(
            Node.desired == Desired.PRESENT,
            Network.desired == Desired.PRESENT,
            Node.pod_ready.is_(True),
            Node.pod_ip.is_not(None),
        )
        .order_by(Node.id)
    )
    return [ProbeRow(r[0], r[1], r[2], r[3], r[4]) for r in rows if r[1]]


async def another_node_ran(session: AsyncSession, node: Node) -> bool:
    """Whether another node of ``node``'s network that should exist has been RUNNING once
    (its start deadline was cleared then)."""
    found = await session.scalar(
        select(Node.id)
        .where(
            Node.network_id == node.network_id,
            Node.id != node.id,
            Node.desired == Desired.PRESENT,
            Node.start_deadline.is_(None),
        )
        .limit(1)
    )
    return found is not None
