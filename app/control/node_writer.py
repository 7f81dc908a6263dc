"""The one way the control loop changes a node's row.

A write reads the row (locked where the database has row locks), applies new facts (objects
made, a pod observed, a deletion started), derives the status from the row's facts in the same
transaction, and bumps the revision by compare-and-set: if another writer (the reconciler and
the pod observer both write nodes) committed the row in between, the attempt is rolled back and
made again from a fresh read, so no writer overwrites newer facts with an older derivation.
Revisions are strictly increasing per node, and the new snapshot is published only once its
transaction has committed (the bus's announcement to other replicas goes out with the commit).
Each write is a unit of the control loop's work: it waits for its turn while the API answers
requests (``foreground``, app/events/foreground.py), before it opens its transaction.

Example::

    async def mark(session, node):  # returns whether it changed a fact
        node.has_service = True
        return True
    view = await writer.write(node_id, mark)   # the new snapshot, or None if nothing changed
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.fence import Fence, NoFence
from app.control.progress import refresh_status
from app.domain.enums import Desired
from app.events.bus import Change, EventBus, NodeChange
from app.events.foreground import Foreground
from app.store import desired, node_feed
from app.store.models import Node
from app.store.read_models import NodeView
from app.store.unit import RowVanished, UnitOfWork

# Changes a node's facts in the session; True if it changed any.
Apply = Callable[[AsyncSession, Node], Awaitable[bool]]


class WriteConflict(Exception):
    """Other writers kept changing the node's row; the caller's change was not written."""


class NodeWriter:
    # A retry happens only when another writer committed this node between our read and our
    # write; a handful covers any real interleaving.
    attempts = 8

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        chain_required: bool = False,
        fence: Fence | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self.sessions = sessions
        self.foreground = foreground or Foreground()  # the API's requests go first
        # Leader election: a transaction starts only while this replica leads, is rolled back
        # if the lease was lost before its commit, and is cut if it outlives the lease.
        self.fence = fence or NoFence()
        self.bus = bus
        self.chain_required = chain_required  # the chain probe is on: RUNNING needs the chain
        self.conflicts = 0  # writes started over because another writer got there first

    async def write(
        self, node_id: str, apply: Apply, *, skip_absent: bool = False
    ) -> NodeView | None:
        """Apply, refresh the status, bump and publish; None if the node is gone (or, with
        ``skip_absent``, being deleted) or nothing changed. Raises ``WriteConflict`` if other
        writers won every attempt (the caller's next event or pass tries again)."""
        await self.foreground.turn()  # never inside a transaction: a request may need its turn
        for _ in range(self.attempts):
            try:
                outcome: NodeView | _Lost | None = await self._attempt(node_id, apply, skip_absent)
            except RowVanished:  # the row was deleted between our read and our write
                outcome = _LOST  # the next attempt reads again (and finds it gone)
            if not isinstance(outcome, _Lost):
                return outcome
            self.conflicts += 1
        raise WriteConflict(f"node {node_id}: other writers won {self.attempts} attempts")

    async def _attempt(
        self, node_id: str, apply: Apply, skip_absent: bool
    ) -> NodeView | _Lost | None:
        async with self.unit() as work:
            found = await desired.node_with_network(work.session, node_id, lock=True)
            if found is None:
                return None
            node, network = found
            if skip_absent and node.desired is Desired.ABSENT:
                return None
            changed = await apply(work.session, node)
            changed = (
                await refresh_status(work.session, node, chain_required=self.chain_required)
                or changed
            )
            if not changed:
                return None
            if not await desired.claim_revision(work.session, node, network.tenant_id):
                work.discard()  # derived from a row that is no longer current
                return _LOST
            view = NodeView.of(node, network)
            change = NodeChange(view.id, view.network_id, view.tenant_id, view)
            await self.announce(work.session, change)
            work.after_commit(lambda: self.publish(change))
        return view

    async def announce(self, session: AsyncSession, change: Change) -> None:
        """Tell other replicas within the writing transaction (delivered on its commit)."""
        if (note := self.bus.announcement(change)) is not None:
            await node_feed.announce(session, *note)

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work of the control loop, behind the fence (see ``app/cluster/fence.py``)."""
        async with self.fence.guard(), UnitOfWork.begin(self.sessions) as work:
            yield work
            self.fence.check()  # lost the lease meanwhile: rolled back, never committed

    def publish(self, change: Change) -> None:
        self.bus.publish(change)


class _Lost:
    """The attempt read a row another writer changed before this one could write it."""


_LOST = _Lost()
