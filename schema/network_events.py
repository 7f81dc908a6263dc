"""The ``networkChanged`` subscription: one network, or all of the tenant's, as events.

A subscriber first gets the snapshot (``NETWORK_UPDATED`` for each chosen network, oldest
first), then an event for every change published on the bus (app/events/bus.py) to one of
those networks or their nodes. The event's kind is derived here, from what this subscriber has
already been told: a network or node it has not heard of is ``..._CREATED`` / ``NODE_ADDED``,
one it has is ``..._UPDATED``, a deleted one ``NETWORK_DELETED`` / ``NODE_REMOVED``. So the
bus's latest-state-wins coalescing (a slow subscriber gets each object's latest state, not a
backlog) never loses an addition or a removal, and an object created and deleted between two
deliveries is not mentioned at all. A node of a network the subscriber has not heard of yet
(its network's event is still queued behind it) first brings that network's
``NETWORK_CREATED``, read from the database. A subscription to one network completes after its
``NETWORK_DELETED``.

Events are executed per subscriber (the kind depends on the subscriber's past), not shared as
node subscriptions' are (schema/fanout.py).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import strawberry
from strawberry.types import Info

from app.events.bus import Change, NetworkChange
from app.store import reads
from app.store.read_models import NetworkView, NodeView
from schema.auth import caller
from schema.context import Context, Loaders
from schema.errors import ClientError
from schema.ids import raw_id_of
from schema.types import Network, Node


@strawberry.enum(description="What happened to a network or one of its nodes.")
class NetworkEventKind(enum.Enum):
    NETWORK_CREATED = "NETWORK_CREATED"
    NETWORK_UPDATED = "NETWORK_UPDATED"
    NETWORK_DELETED = "NETWORK_DELETED"
    NODE_ADDED = "NODE_ADDED"
    NODE_UPDATED = "NODE_UPDATED"
    NODE_REMOVED = "NODE_REMOVED"


@strawberry.type(
    description="A change to a network or one of its nodes. `network` is the network's last "
    "state (also on NETWORK_DELETED); `node` is set for the NODE_ kinds."
)
class NetworkEvent:
    kind: NetworkEventKind
    network_id: strawberry.Private[str]
    network_view: strawberry.Private[NetworkView | None]  # None: read when selected
    last_known: strawberry.Private[NetworkView | None]  # if it is gone when read
    node_view: strawberry.Private[NodeView | None]
    loaders: strawberry.Private[Loaders]

    @strawberry.field
    async def network(self) -> Network | None:
        view = self.network_view
        if view is None:
            view = await self.loaders.network.load(self.network_id) or self.last_known
        return Network.of(view, self.loaders) if view is not None else None

    @strawberry.field
    def node(self) -> Node | None:
        return Node.of(self.node_view, self.loaders) if self.node_view is not None else None


Kind = NetworkEventKind


@dataclass
class _Told:
    """What one subscriber has been told: networks' last states, nodes' last revisions."""

    networks: dict[str, NetworkView]
    nodes: dict[str, int] = field(default_factory=dict)

    def network_event(self, change: NetworkChange) -> tuple[Kind, NetworkView] | None:
        """The event's kind and the network's last state, or None: nothing to tell."""
        if change.deleted:
            told = self.networks.pop(change.network_id, None)
            if told is None:
                return None  # made and deleted before this subscriber heard of it
            # The bus's last state, or (heard from another replica that alone had it) the last
            # state this subscriber was told.
            return Kind.NETWORK_DELETED, change.snapshot or told
        view: NetworkView = change.snapshot
        kind = Kind.NETWORK_UPDATED if view.id in self.networks else Kind.NETWORK_CREATED
        self.networks[view.id] = view
        return kind, view

    def node_event(self, view: NodeView, deleted: bool) -> Kind | None:
        if deleted:
            return Kind.NODE_REMOVED if self.nodes.pop(view.id, None) is not None else None
        told = self.nodes.get(view.id)
        if told is not None and view.revision <= told:
            return None  # the snapshot (or an earlier event) already showed this state
        self.nodes[view.id] = view.revision
        return Kind.NODE_ADDED if told is None else Kind.NODE_UPDATED


async def _snapshot(
    context: Context, tenant_id: str, network_id: str | None
) -> tuple[list[NetworkView], list[NodeView]]:
    async with context.deps.sessions() as session:
        networks = await reads.networks_of_tenant(session, tenant_id, network_id)
        if network_id is not None:
            if not networks:
                raise ClientError("no such network")
            return networks, await reads.nodes_of_network(session, tenant_id, network_id)
        return networks, await reads.all_nodes(session, tenant_id)


async def network_changed(
    info: Info[Context, None], network_id: strawberry.ID | None = None
) -> AsyncGenerator[NetworkEvent, None]:
    principal = caller(info)
    raw = raw_id_of(network_id, "Network") if network_id is not None else None
    if network_id is not None and raw is None:
        raise ClientError("`networkId` is not a Network ID")
    context, tenant = info.context, principal.tenant_id
    # Subscribe before reading the snapshot, so no change falls between the two.
    async with context.deps.bus.subscribe(raw, None, tenant, networks=True) as mailbox:
        networks, nodes = await _snapshot(context, tenant, raw)
        told = _Told({view.id: view for view in networks})
        told.nodes = {view.id: view.revision for view in nodes}
        for view in networks:
            yield _event(context, Kind.NETWORK_UPDATED, view.id, view, told)
        while True:
            change = await mailbox.get()
            if not context.still_open():
                return  # the token ended: the socket is being closed
            async for event in _events(context, told, change, raw is None):
                yield event
            if raw is not None and raw not in told.networks:
                return  # the network is gone: the subscription is complete


async def _events(
    context: Context, told: _Told, change: Change, all_networks: bool
) -> AsyncGenerator[NetworkEvent, None]:
    if isinstance(change, NetworkChange):
        told_now = told.network_event(change)
        if told_now is not None:
            yield _event(context, told_now[0], change.network_id, told_now[1], told)
        return
    if change.network_id not in told.networks:
        if not all_networks or change.deleted:
            return  # a node of a network this subscriber was told is gone
        loaders = context.fresh_loaders()
        network = await loaders.network.load(change.network_id)
        if network is None:
            return  # gone already: its deletion follows
        told.networks[network.id] = network
        yield _event(context, Kind.NETWORK_CREATED, network.id, network, told)
    kind = told.node_event(change.snapshot, change.deleted)
    if kind is not None:
        yield _event(context, kind, change.network_id, None, told, change.snapshot)


def _event(
    context: Context,
    kind: Kind,
    network_id: str,
    network: NetworkView | None,
    told: _Told,
    node: NodeView | None = None,
) -> NetworkEvent:
    return NetworkEvent(
        kind=kind,
        network_id=network_id,
        network_view=network,
        last_known=told.networks.get(network_id),
        node_view=node,
        loaders=context.fresh_loaders(),
    )
