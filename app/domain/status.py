"""Status derivation: what a user sees, from what was asked (desired) and what runs (observed).

Pure functions: the reconciler and the pod watch record facts, these turn facts into a status.

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


def node_status(facts: NodeFacts) -> tuple[NodeStatus, str | None]:
    """The node's status and its reason: why it FAILED, why it is not scheduled, or why the
    reconciler is still retrying it."""
    if facts.desired is Desired.ABSENT:
        return NodeStatus.DELETING, facts.retrying
    if facts.error:
        return NodeStatus.FAILED, facts.error
    if facts.pod_phase == "Running" and facts.pod_ready:
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


def network_status(node_statuses: Iterable[NodeStatus], deleting: bool) -> NetworkStatus:
    """Aggregate: all running is RUNNING; some failed is DEGRADED or FAILED."""
    if deleting:
        return NetworkStatus.DELETING
    statuses = list(node_statuses)
    if not statuses:
        return NetworkStatus.PENDING
    running = statuses.count(NodeStatus.RUNNING)
    failed = statuses.count(NodeStatus.FAILED)
    if running == len(statuses):
        return NetworkStatus.RUNNING
    if failed:
        return NetworkStatus.DEGRADED if running else NetworkStatus.FAILED
    if all(s is NodeStatus.PENDING for s in statuses):
        return NetworkStatus.PENDING
    return NetworkStatus.STARTING
