"""Deletion: a node marked ABSENT (a raft member deleted on its own first leaves raft:
app/control/raft.py) loses its objects (StatefulSet, an old Deployment, Service and
data claim: a StatefulSet never deletes the claims it made), then (on a later pass, once the cluster
has nothing left of it) its row; a network goes when its last node has; objects with our labels
but no row (orphans, e.g. after a crash before a commit) are deleted.

Example::

    removal = Removal(sessions, writer, settings)
    await removal.remove_node(network, node, observed)
    await removal.remove_network_if_empty(network)
    await removal.delete_orphans(observed, known_node_ids)
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.errors import Conflict, KubeError, NotFound
from app.config import Settings
from app.control.converge import Observed
from app.control.node_writer import NodeWriter
from app.control.progress import fail_unfinished_starts, finish_operations
from app.control.raft import Done, RaftRemoval, needs_raft_step, skip_message
from app.domain.enums import Desired, OperationKind, OperationState
from app.events.bus import NetworkChange, NodeChange
from app.store import desired, operations
from app.store.models import Network, Node, utcnow
from app.store.read_models import NetworkView, NodeView

log = logging.getLogger("qaas.reconciler")


class Removal:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], writer: NodeWriter, settings: Settings
    ) -> None:
        self.sessions = sessions
        self.writer = writer
        self.raft = RaftRemoval(settings)
        self.raft_deadline = datetime.timedelta(seconds=settings.raft_remove_deadline)

    async def remove_node(self, network: Network, node: Node, observed: Observed) -> None:
        now: dict[str, Any] = {}

        async def start(session: AsyncSession, row: Node) -> bool:
            changed = await _start_deleting(session, row)
            if row.delete_deadline is None:
                row.delete_deadline, changed = utcnow() + self.raft_deadline, True
            now.update(force=row.delete_force, removed=row.raft_removed,
                       deadline=row.delete_deadline, retrying=row.retry_reason)  # fmt: skip
            return changed

        await self.writer.write(node.id, start)
        if not now:
            return  # the row is gone
        node.delete_force, node.raft_removed = now["force"], now["removed"]
        if not await self._leave_raft(network, node, now["deadline"], now["retrying"]):
            return  # the objects stay until the raft step is done (or forced)
        left = False
        # The claim last: it is in use until the pod is gone (its protection finalizer holds it
        # till then), and the row stays until it is gone, so the name cannot be reused earlier.
        for resource, objects in observed.kinds():
            obj = objects.pop(node.id, None)
            if obj is not None:
                left = True
                try:
                    await resource.delete(obj["metadata"]["name"], obj["metadata"]["uid"])
                except (NotFound, Conflict):
                    pass  # gone already, or replaced by a newer object: not ours to delete
        if left:
            if node.retry_reason is not None:  # the deletes went through this time
                await self.writer.write(node.id, clear_retry_reason)
            return  # the next pass confirms they are gone before the row goes
        async with self.writer.unit() as work:
            await desired.delete_node(work.session, node.id)
            await finish_operations(
                work.session, node_id=node.id, kinds=(OperationKind.NODE_DELETE,),
                message="the node and its objects are deleted",
            )  # fmt: skip
            await fail_unfinished_starts(work.session, node.id)
            gone = NodeChange(node.id, network.id, network.tenant_id, NodeView.of(node, network),
                              deleted=True)  # fmt: skip
            await self.writer.announce(work.session, gone)
            work.after_commit(lambda: self.writer.publish(gone))
        log.info("deleted node %s of network %s", node.name, network.name)

    async def _leave_raft(
        self, network: Network, node: Node, deadline: datetime.datetime, retrying: str | None
    ) -> bool:
        """True when the node's objects may go: no raft step is needed, or it is done."""
        if not needs_raft_step(network, node):
            await self.show(node.id, skip_message(network, node))
            return True
        if utcnow() > deadline:
            last = (retrying or "").removeprefix(RETRYING)
            reason = (f"raft removal failed within {self.raft_deadline.total_seconds():g} s"
                      + (f": {last}" if last else "")
                      + "; nodeDelete with force: true removes the objects anyway")  # fmt: skip
            await self.show(node.id, reason, failed=True)
            await self.writer.write(node.id, _set_retry_reason(FAILED + reason))
            return False
        outcome = await self.raft.try_remove(network, node, on_step=lambda m: self.show(node.id, m))
        if isinstance(outcome, Done):
            await self.writer.write(node.id, _raft_removed)
            await self.show(node.id, f"{outcome.message}; removing the objects")
            return True
        log.info("node %s: raft removal pending: %s", node.name, outcome.reason)
        await self.writer.write(node.id, _set_retry_reason(RETRYING + outcome.reason))
        await self.show(node.id, f"raft removal (retried until {deadline:%H:%M:%S} UTC): "
                        f"{outcome.reason}")  # fmt: skip
        return False

    async def show(self, node_id: str, message: str, failed: bool = False) -> None:
        """The node's unfinished delete operation says ``message`` (and has FAILED)."""
        async with self.writer.unit() as work:
            kinds = (OperationKind.NODE_DELETE,)
            for operation in await operations.unfinished(work.session, kinds=kinds,
                                                         node_id=node_id):  # fmt: skip
                operation.message = message
                if failed:
                    operation.state, operation.finished_at = OperationState.FAILED, utcnow()

    async def remove_network_if_empty(self, network: Network) -> None:
        async with self.writer.unit() as work:
            if not await desired.delete_network_if_empty(work.session, network.id):
                return
            await finish_operations(
                work.session, network_id=network.id, kinds=(OperationKind.NETWORK_DELETE,),
                message="the network and all of its objects are deleted",
            )  # fmt: skip
            gone = NetworkChange(network.id, network.tenant_id, NetworkView.of(network, []),
                                 deleted=True)  # fmt: skip
            await self.writer.announce(work.session, gone)  # other replicas hear it on commit
            work.after_commit(lambda: self.writer.publish(gone))
        log.info("deleted network %s", network.name)

    @staticmethod
    async def delete_orphans(observed: Observed, known: set[str]) -> None:
        """Objects with our labels whose node has no row (claims and old Deployments too)."""
        for resource, objects in observed.kinds():
            for node_id, obj in objects.items():
                if node_id in known:
                    continue
                name = obj["metadata"]["name"]
                log.info("deleting orphan %s %s", obj.get("kind", ""), name)
                try:
                    await resource.delete(name, obj["metadata"]["uid"])
                except (NotFound, Conflict):
                    pass
                except KubeError as error:  # the next pass tries again; the others go on
                    log.warning("could not delete orphan %s %s: %s", obj.get("kind"), name, error)


async def _start_deleting(session: AsyncSession, node: Node) -> bool:
    """The node (or its network) is marked for deletion: its delete operation is under way."""
    changed = node.desired is not Desired.ABSENT
    node.desired = Desired.ABSENT  # its network is being deleted
    await operations.mark_node_deletes_started(session, node.id)
    return changed


RETRYING = "Retrying: raft removal: "
FAILED = "Failed: "


def _set_retry_reason(reason: str) -> Any:
    async def apply(_: AsyncSession, node: Node) -> bool:
        changed = node.retry_reason != reason
        node.retry_reason = reason
        return changed

    return apply


async def _raft_removed(_: AsyncSession, node: Node) -> bool:
    changed = not node.raft_removed or node.retry_reason is not None
    node.raft_removed, node.retry_reason = True, None
    return changed


async def clear_retry_reason(_: AsyncSession, node: Node) -> bool:
    """The reconciler's last try for the node succeeded."""
    changed = node.retry_reason is not None
    node.retry_reason = None
    return changed
