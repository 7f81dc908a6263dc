"""What one reconcile pass reads: every network (ORM objects: a few thousand) and every node as a
plain positional row (``PassNode``), not as an ORM object.

At 10,000 nodes, loading them as ORM objects and reading their attributes through SQLAlchemy's
instrumentation was about a sixth of a settled pass (py-spy, bench/reconcile_scale.py); a
``PassNode`` is a named tuple, so an attribute is an index, and the whole row compares as one
value (the reconciler remembers it to know that nothing changed since its last pass). Deleting a
node needs the ORM rows of its network (``network_for_removal``): one more statement, only for a
network with something to delete.

Example::

    for network, nodes in await pass_rows(session):
        for node in nodes:
            node.status, node.has_service  # a PassNode
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Collection
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.domain.enums import Desired, NodeRole, NodeStatus
from app.store.models import Network, Node


class PassNode(NamedTuple):
    """The columns of a node a pass reads (named as ``Node``'s): what decides whether its
    objects and its row are as they should be."""

    id: str
    network_id: str
    name: str
    role: NodeRole
    desired: Desired
    start_deadline: datetime.datetime | None
    service_ip: str | None
    has_service: bool
    has_deployment: bool
    reconcile_error: str | None
    retry_reason: str | None
    pod_name: str | None
    pod_phase: str | None
    pod_ready: bool
    restart_count: int
    pod_reason: str | None
    pod_message: str | None
    pod_ip: str | None
    chain_probed_at: datetime.datetime | None
    chain_run: str | None
    chain_answering: bool | None
    chain_error: str | None
    chain_peer_count: int | None
    chain_syncing: bool | None
    chain_raft_member: bool | None
    chain_stalled: bool
    status: NodeStatus
    status_reason: str | None


PASS_COLUMNS = tuple(getattr(Node, name) for name in PassNode._fields)
CHUNK = 250  # rows fetched and converted at a time


async def pass_rows(
    session: AsyncSession,
    only: Collection[str] | None = None,
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[tuple[Network, list[PassNode]]]:
    """Every network of every tenant (or the networks ``only`` names) with its nodes: two
    statements whatever the number. The rows are fetched and converted ``CHUNK`` at a time,
    awaiting ``between`` after each chunk (a pass gives the event loop turns there: 10,000
    nodes at once held it for a fifth of a second, bench/reconcile_scale.py)."""
    network_rows, node_rows = select(Network), select(*PASS_COLUMNS)
    if only is not None:
        network_rows = network_rows.where(Network.id.in_(only))
        node_rows = node_rows.where(Node.network_id.in_(only))
    networks: list[Network] = []
    async for chunk in (await session.stream_scalars(network_rows)).partitions(CHUNK):
        networks.extend(chunk)
        if between is not None:
            await between()
    nodes: dict[str, list[PassNode]] = {network.id: [] for network in networks}
    async for rows in (await session.stream(node_rows)).partitions(CHUNK):
        for row in rows:
            node = PassNode(*row)
            nodes.setdefault(node.network_id, []).append(node)
        if between is not None:
            await between()
    return [(network, nodes[network.id]) for network in networks]


async def network_for_removal(session: AsyncSession, network_id: str) -> Network | None:
    """The network with its nodes as ORM objects (what deleting a node works from), or None."""
    network = await session.get(Network, network_id)
    if network is None:
        return None
    nodes = list(await session.scalars(select(Node).where(Node.network_id == network_id)))
    set_committed_value(network, "nodes", nodes)
    return network
