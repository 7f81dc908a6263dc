"""Status derivation: what a user sees, from what was asked (desired) and what runs (observed).

Pure functions: the reconciler and the pod watch record facts, these turn facts into a status.

With the chain probe on (``chain_required``), a ready pod is not enough: ``RUNNING`` also needs
the chain to answer and, where the node must have peers (``needs_peers``: a peer, or a node of
a network where another node has run), at least one peer and, under raft, membership of the
raft cluster where the node says so. Before that the node is ``STARTING`` (no answer yet) or
``JOINING`` (answers, but no peers, no raft membership, or syncing; or a peer whose chain
does not answer yet: a QNM peer starts geth only once its coordinator answered); past its
start deadline it is ``FAILED`` with what is missing. A node that has run (``has_run``) and
loses its chain, its peers, its membership or (IBFT) its blocks is ``UNHEALTHY``. Under raft
a flat block height is not a fault: raft mints only when there are transactions.

Example::

    >>> node_status(NodeFacts(desired=Desired.PRESENT, has_service=True, has_deployment=True,
    ...     pod_phase="Running", pod_ready=True))
    (<NodeStatus.RUNNING: 'RUNNING'>, None)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.enums import Desired, NetworkStatus, NodeStatus

# Waiting reasons that will not fix themselves: the node has failed, with this reason.
FAILING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


# The scheduler's reason for a pod no node can take.
UNSCHEDULABLE = "Unschedulable"


@dataclass(frozen=True)
class ChainFacts:
    """What the chain probe last saw of the node's current container (None fields: unknown)."""

    answering: bool
    error: str | None = None  # why it does not answer
    peer_count: int | None = None
    syncing: bool | None = None
    raft_member: bool | None = None  # its enode is in raft_cluster (None: not raft, or unknown)
    stalled: bool = False  # IBFT: no new block for longer than the probe's stall limit


@dataclass(frozen=True)
class NodeFacts:
    desired: Desired
    has_service: bool = False  # its Service exists (it has a ClusterIP)
    has_deployment: bool = False  # its Deployment exists
    pod_phase: str | None = None  # Pending, Running, Succeeded, Failed, or None (no pod)
    pod_ready: bool = False
    reason: str | None = None  # the container's waiting/terminated reason
    message: str | None = None
    error: str | None = None  # a reconcile error (e.g. the name is taken by a foreign object)
    retrying: str | None = None  # why the reconciler's last try for the node failed
    deadline_passed: bool = False
    # The chain (only when the probe is on): None until probed since the container started.
    chain_required: bool = False
    chain: ChainFacts | None = None
    needs_peers: bool = False
    has_run: bool = False  # it was RUNNING once (its start deadline is behind it)


def node_status(facts: NodeFacts) -> tuple[NodeStatus, str | None]:
    """The node's status and its reason: why it FAILED, why it is not scheduled, or why the
    reconciler is still retrying it."""
    if facts.desired is Desired.ABSENT:
        return NodeStatus.DELETING, facts.retrying
    if facts.error:
        return NodeStatus.FAILED, facts.error
    if facts.pod_phase == "Running" and facts.pod_ready:
        if facts.chain_required:
            return chain_status(facts)
        return NodeStatus.RUNNING, None
    if facts.pod_phase == "Failed" or (facts.reason in FAILING_REASONS):
        detail = ": ".join(part for part in (facts.reason, facts.message) if part)
        return NodeStatus.FAILED, detail or "the pod failed"
    if facts.reason == UNSCHEDULABLE:
        # Not "starting": no node can take the pod until something changes (capacity, taints).
        detail = f"{UNSCHEDULABLE}: {facts.message}" if facts.message else UNSCHEDULABLE
        if facts.deadline_passed:
            return NodeStatus.FAILED, f"{detail} (not running within its start deadline)"
        return NodeStatus.PENDING, detail
    if facts.chain_required and facts.has_run and facts.pod_phase == "Running":
        detail = ": ".join(part for part in (facts.reason, facts.message) if part)
        return NodeStatus.UNHEALTHY, "the pod is not ready" + (f" ({detail})" if detail else "")
    if facts.chain_required and facts.needs_peers and facts.pod_phase == "Running":
        # The pod's readiness probe is on geth's RPC port, and a QNM peer starts geth only once
        # its coordinator answered: a running peer that is not ready has not joined yet.
        why = "the pod is not ready: its chain does not answer yet"
        if facts.deadline_passed:
            return NodeStatus.FAILED, f"not joined within its start deadline: no peers ({why})"
        return NodeStatus.JOINING, f"no peers yet ({why})"
    if facts.deadline_passed:
        last = facts.retrying or facts.reason
        return NodeStatus.FAILED, "the node was not running within its start deadline" + (
            f" (last seen: {last})" if last else ""
        )
    # Still on its way; if the reconciler's last try for it failed, that is the reason.
    if facts.pod_phase is not None or facts.has_deployment:
        return NodeStatus.STARTING, facts.retrying
    if facts.has_service:
        return NodeStatus.PROVISIONING, facts.retrying
    return NodeStatus.PENDING, facts.retrying


def chain_status(facts: NodeFacts) -> tuple[NodeStatus, str | None]:
    """A ready pod's status from its chain (see the module's docstring)."""
    chain = facts.chain
    if chain is None or not chain.answering:
        said = chain.error if chain is not None and chain.error else None
        if chain is None:
            why = "the chain has not been probed since the container started"
        else:
            why = "the chain does not answer" + (f": {said}" if said else "")
        if facts.has_run:
            return NodeStatus.UNHEALTHY, why
        if chain is not None and facts.needs_peers:
            # A QNM peer starts its chain only once its coordinator answered: no answer means
            # it has not joined.
            if facts.deadline_passed:
                return NodeStatus.FAILED, f"not joined within its start deadline: no peers ({why})"
            return NodeStatus.JOINING, f"no peers yet ({why})"
        if facts.deadline_passed:
            return NodeStatus.FAILED, f"{why} (not running within its start deadline)"
        return NodeStatus.STARTING, why if chain is not None else None
    missing = []
    if facts.needs_peers and chain.peer_count == 0:
        missing.append("no peers")
    if chain.raft_member is False:
        missing.append("no raft membership")
    if facts.has_run:
        if chain.stalled:
            missing.append("no new block (IBFT)")
        if missing:
            return NodeStatus.UNHEALTHY, ", ".join(missing)
        return NodeStatus.RUNNING, None  # a running node that syncs for a moment is fine
    if chain.syncing:
        missing.append("syncing")
    if not missing:
        return NodeStatus.RUNNING, None
    if facts.deadline_passed:
        return NodeStatus.FAILED, f"not joined within its start deadline: {', '.join(missing)}"
    return NodeStatus.JOINING, ", ".join(missing)


def network_status(node_statuses: Iterable[NodeStatus], deleting: bool) -> NetworkStatus:
    """Aggregate: all running is RUNNING; some failed or unhealthy is DEGRADED (others run) or
    FAILED (none runs, none is unhealthy); nodes on their way (JOINING included): STARTING."""
    if deleting:
        return NetworkStatus.DELETING
    statuses = list(node_statuses)
    if not statuses:
        return NetworkStatus.PENDING
    running = statuses.count(NodeStatus.RUNNING)
    failed = statuses.count(NodeStatus.FAILED)
    unhealthy = statuses.count(NodeStatus.UNHEALTHY)
    if running == len(statuses):
        return NetworkStatus.RUNNING
    if failed or unhealthy:
        # An unhealthy node ran and may recover: its network is degraded, not failed.
        return NetworkStatus.DEGRADED if running or unhealthy else NetworkStatus.FAILED
    if all(s is NodeStatus.PENDING for s in statuses):
        return NetworkStatus.PENDING
    return NetworkStatus.STARTING
