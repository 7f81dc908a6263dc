"""The one way the control loop changes a node's row.

A write applies new facts (objects made, a pod observed, a deletion started), derives the status
from those facts in the same transaction, bumps the revision when anything changed, and
publishes the node's new snapshot only once the transaction has committed.

Example::

    async def mark(session, node):  # returns whether it changed a fact
        node.has_service = True
        return True
    view = await writer.write(node_id, mark)   # the new snapshot, or None if nothing changed
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.control.progress import refresh_status
from app.domain.enums import Desired
from app.events.bus import EventBus, NodeChange
from app.store import desired
from app.store.models import Node
from app.store.read_models import NodeView
from app.store.unit import UnitOfWork

# Changes a node's facts in the session; True if it changed any.
Apply = Callable[[AsyncSession, Node], Awaitable[bool]]


class NodeWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
        self.sessions = sessions
        self.bus = bus

    async def write(
        self, node_id: str, apply: Apply, *, skip_absent: bool = False
    ) -> NodeView | None:
        """Apply, refresh the status, bump and publish; None if the node is gone (or, with
        ``skip_absent``, being deleted) or nothing changed."""
        async with UnitOfWork.begin(self.sessions) as work:
            found = await desired.node_with_network(work.session, node_id)
            if found is None:
                return None
            node, network = found
            if skip_absent and node.desired is Desired.ABSENT:
                return None
            changed = await apply(work.session, node)
            changed = await refresh_status(work.session, node) or changed
            if not changed:
                return None
            node.revision += 1
            view = NodeView.of(node, network)
            work.after_commit(lambda: self.publish(NodeChange(view.id, view.network_id,
                                                              view.tenant_id, view)))  # fmt: skip
        return view

    def publish(self, change: NodeChange) -> None:
        self.bus.publish(change)
