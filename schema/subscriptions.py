"""Subscription root: live node status, a snapshot first and then every change.

The per-event work is done once: the pod observer reads the node from the database once and
the bus hands that same immutable change to every subscriber; the selection is then executed
and serialised once per group of subscribers with the same tenant, role, document and
variables (schema/fanout.py). Snapshots are rendered for each subscriber; subscribers opening
at the same time share the snapshot's read (never one older than their subscription).
A subscriber that falls behind gets the latest state of each node.
Once the connection's token is revoked or expired, no further change is rendered (and the
connection sends nothing more: see app/services/connections.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from typing import cast
from weakref import WeakKeyDictionary

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info

from app.events.bus import NodeChange
from app.store import reads
from app.store.read_models import NodeView
from schema.auth import caller
from schema.context import Context
from schema.errors import ClientError
from schema.fanout import ReadQueue, SharedEvent
from schema.ids import raw_id_of
from schema.network_events import network_changed
from schema.types import Node

SnapshotKey = tuple[str, str | None, str | None]  # tenant, network, node
_snapshot_reads: WeakKeyDictionary[object, ReadQueue[SnapshotKey, list[NodeView]]]
_snapshot_reads = WeakKeyDictionary()  # per database (its sessionmaker)


async def _snapshot(
    info: Info[Context, None], tenant_id: str, network_id: str | None, node_id: str | None
) -> list[NodeView]:
    """The chosen nodes now. Subscribers asking for the same nodes at the same time share one
    read that began after they asked (``ReadQueue``): opening many subscriptions at once costs
    a read per distinct choice, not per subscriber."""
    sessions = info.context.deps.sessions
    queue = _snapshot_reads.get(sessions)
    if queue is None:
        queue = _snapshot_reads[sessions] = ReadQueue()
    fetch = partial(_read_snapshot, sessions, tenant_id, network_id, node_id)
    return await queue.read((tenant_id, network_id, node_id), fetch)


async def _read_snapshot(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    network_id: str | None,
    node_id: str | None,
) -> list[NodeView]:
    async with sessions() as session:
        if node_id is not None:
            found = await reads.nodes_by_ids(session, tenant_id, [node_id])
            if found[0] is None:
                raise ClientError("no such node")
            return [found[0]]
        if network_id is not None:
            if (await reads.networks_by_ids(session, tenant_id, [network_id]))[0] is None:
                raise ClientError("no such network")
            return await reads.nodes_of_network(session, tenant_id, network_id)
        return await reads.all_nodes(session, tenant_id)


def _node(view: NodeView, context: Context) -> Node:
    return Node.of(view, context.fresh_loaders())


@strawberry.type
class Subscription:
    network_changed = strawberry.subscription(
        resolver=network_changed,
        description="The chosen networks now (one, or all of the tenant's), each as a "
        "NETWORK_UPDATED event, then an event for every change to one of them or to one of "
        "their nodes: created, updated, deleted; a node added, updated, removed.",
    )

    @strawberry.subscription(
        description="The current state of the chosen nodes (one node, one network's, or all), "
        "then the full node each time it changes."
    )
    async def node_status_changed(
        self,
        info: Info[Context, None],
        network_id: strawberry.ID | None = None,
        node_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[Node, None]:
        principal = caller(info)
        network_raw = raw_id_of(network_id, "Network") if network_id is not None else None
        node_raw = raw_id_of(node_id, "Node") if node_id is not None else None
        if network_id is not None and network_raw is None:
            raise ClientError("`networkId` is not a Network ID")
        if node_id is not None and node_raw is None:
            raise ClientError("`nodeId` is not a Node ID")
        context = info.context
        # Subscribe before reading the snapshot, so no change falls between the two; the
        # revision numbers then drop anything the snapshot already covers.
        tenant = principal.tenant_id
        async with context.deps.bus.subscribe(network_raw, node_raw, tenant) as mailbox:
            sent: dict[str, int] = {}
            for view in await _snapshot(info, tenant, network_raw, node_raw):
                sent[view.id] = view.revision
                yield Node.of(view, context.fresh_loaders())
            while True:
                change = await mailbox.get()
                if not context.still_open():
                    return  # the token ended: the socket is being closed
                assert isinstance(change, NodeChange)  # no network changes were asked for
                if change.deleted:
                    if node_raw is not None:
                        return  # the node is gone: the subscription is complete
                    continue
                latest: NodeView = change.snapshot
                if latest.revision <= sent.get(latest.id, -1):
                    continue
                sent[latest.id] = latest.revision
                # The executor renders it once for the group (schema/fanout.py).
                yield cast("Node", SharedEvent(change, partial(_node, latest, context)))
