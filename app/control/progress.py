"""Turn a node's recorded facts into its status, its history and its operations' progress.

Called by the reconciler (objects created, deadlines) and by the pod observer (pod status), in
their unit of work. A status is recorded in the history only when it changes, so duplicate
events from the watch never produce duplicate transitions.
"""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import Desired, NodeRole, NodeStatus, OperationKind, OperationState
from app.domain.status import ChainFacts, NodeFacts, node_status
from app.store import chain, desired, operations
from app.store.models import Node, NodeStatusChange, utcnow
from app.store.pass_rows import PassNode

STARTING_KINDS = (OperationKind.NETWORK_CREATE, OperationKind.NETWORK_JOIN, OperationKind.NODE_ADD)
_OPERATION_STATE = {
    NodeStatus.PENDING: OperationState.PENDING,
    NodeStatus.PROVISIONING: OperationState.PROVISIONING,
    NodeStatus.STARTING: OperationState.STARTING,
    NodeStatus.JOINING: OperationState.STARTING,
    NodeStatus.RUNNING: OperationState.SUCCEEDED,
    NodeStatus.FAILED: OperationState.FAILED,
}


def container_run(pod_name: str | None, restart_count: int) -> str:
    """Names one run of a node's container: chain facts of another run do not count."""
    return f"{pod_name}#{restart_count}"


def chain_facts(node: Node | PassNode) -> ChainFacts | None:
    """The probe's facts about the node's current container, or None (not probed since)."""
    if node.chain_probed_at is None or node.chain_run != container_run(
        node.pod_name, node.restart_count
    ):
        return None
    return ChainFacts(
        answering=bool(node.chain_answering),
        error=node.chain_error,
        peer_count=node.chain_peer_count,
        syncing=node.chain_syncing,
        raft_member=node.chain_raft_member,
        stalled=node.chain_stalled,
    )


def needs_peers(node: Node | PassNode, another_ran: bool) -> bool:
    """A peer needs peers; so does any node of a network where another node has run."""
    return node.role is NodeRole.PEER or another_ran


def facts_of(
    node: Node | PassNode,
    now: datetime.datetime,
    *,
    chain_required: bool = False,
    another_ran: bool = False,
) -> NodeFacts:
    return NodeFacts(
        desired=node.desired,
        has_service=node.has_service,
        has_deployment=node.has_deployment,
        pod_phase=node.pod_phase,
        pod_ready=node.pod_ready,
        reason=node.pod_reason,
        message=node.pod_message,
        error=node.reconcile_error,
        retrying=node.retry_reason,
        deadline_passed=node.start_deadline is not None and now > node.start_deadline,
        chain_required=chain_required,
        chain=chain_facts(node) if chain_required else None,
        needs_peers=needs_peers(node, another_ran),
        has_run=node.start_deadline is None,
    )


async def refresh_status(
    session: AsyncSession,
    node: Node,
    now: datetime.datetime | None = None,
    *,
    chain_required: bool = False,
) -> bool:
    """Derive and store the node's status; True if it changed (and was added to history).
    With ``chain_required`` (the chain probe is on) RUNNING also needs the chain's facts."""
    now = now or utcnow()
    another_ran = (
        chain_required
        and node.desired is Desired.PRESENT
        and node.role is NodeRole.COORDINATOR
        and await chain.another_node_ran(session, node)
    )
    facts = facts_of(node, now, chain_required=chain_required, another_ran=another_ran)
    status, reason = node_status(facts)
    if status is NodeStatus.RUNNING:
        node.start_deadline = None  # it made it: a later crash is not a start-up failure
    if (status, reason) == (node.status, node.status_reason):
        return False
    if node.status_changed_at is not None and now <= node.status_changed_at:
        # History is ordered by time as well as by revision, whatever the clocks did.
        now = node.status_changed_at + datetime.timedelta(microseconds=1)
    node.status, node.status_reason, node.status_changed_at = status, reason, now
    desired.record_status(
        session, NodeStatusChange(node_id=node.id, status=status, reason=reason, at=now)
    )
    await _advance_operations(session, node, status, reason, now)
    return True


async def _advance_operations(
    session: AsyncSession,
    node: Node,
    status: NodeStatus,
    reason: str | None,
    now: datetime.datetime,
) -> None:
    target = _OPERATION_STATE.get(status)
    if target is None:
        return
    with session.no_autoflush:  # the node's row is written once, with its revision (desired.py)
        unfinished = await operations.unfinished(session, node_id=node.id, kinds=STARTING_KINDS)
    for operation in unfinished:
        operation.state = target
        # An unfinished operation carries the node's current reason (Unschedulable, Retrying).
        operation.message = reason
        if target.finished:
            operation.finished_at = now
            operation.message = reason if target is OperationState.FAILED else "the node is running"


async def finish_operations(
    session: AsyncSession,
    *,
    node_id: str | None = None,
    network_id: str | None = None,
    kinds: tuple[OperationKind, ...],
    message: str,
) -> None:
    """Mark the unfinished operations of these kinds on this node or network SUCCEEDED."""
    now = utcnow()
    pending = await operations.unfinished(
        session, kinds=kinds, node_id=node_id, network_id=network_id
    )
    for operation in pending:
        operation.state, operation.finished_at, operation.message = (
            OperationState.SUCCEEDED,
            now,
            message,
        )


async def fail_unfinished_starts(session: AsyncSession, node_id: str) -> None:
    """The node was deleted before it ran: its start operations failed."""
    now = utcnow()
    for operation in await operations.unfinished(session, node_id=node_id, kinds=STARTING_KINDS):
        operation.state, operation.finished_at = OperationState.FAILED, now
        operation.message = "the node was deleted before it was running"
