"""A node's pod waiting for its new data claim to bind is starting, not unschedulable; a pod no
node can take still is. The scheduler's words are those of kube-scheduler 1.20 (the sandbox's):
its VolumeBinding filter says "pod has unbound immediate PersistentVolumeClaims"."""

from __future__ import annotations

from typing import Any

import pytest

from app.cluster.pods import WAITING_FOR_STORAGE, current_pod, observe
from app.domain.enums import Desired, NodeStatus
from app.domain.status import NodeFacts, node_status


def _pending_pod(message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "acme-coordinator-0"},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable", "message": message}],
        },
    }  # fmt: skip


def _status(message: str, deadline_passed: bool = False) -> tuple[NodeStatus, str | None]:
    seen = observe(_pending_pod(message))
    facts = NodeFacts(
        desired=Desired.PRESENT, has_service=True, has_deployment=True, pod_phase=seen.phase,
        reason=seen.reason, message=seen.message, deadline_passed=deadline_passed,
    )  # fmt: skip
    return node_status(facts)


@pytest.mark.parametrize(
    "message",
    [
        "0/2 nodes are available: 2 pod has unbound immediate PersistentVolumeClaims.",
        # The pod reached the scheduler before its claim did (the StatefulSet controller makes
        # both; under load the scheduler's cache may not have the claim yet).
        'persistentvolumeclaim "data-acme-coordinator-0" not found',
    ],
)
def test_a_pod_waiting_for_its_claim_is_starting(message: str) -> None:
    assert observe(_pending_pod(message)).reason == WAITING_FOR_STORAGE
    assert _status(message) == (NodeStatus.STARTING, None)
    # A claim that never binds (a StorageClass that does not exist) is named at the deadline.
    status, reason = _status(message, deadline_passed=True)
    assert status is NodeStatus.FAILED
    assert WAITING_FOR_STORAGE in (reason or "")


def test_a_pod_no_node_can_take_is_still_pending() -> None:
    message = "0/1 nodes are available: 1 Insufficient cpu."
    assert _status(message) == (NodeStatus.PENDING, f"Unschedulable: {message}")


def _pod(name: str, uid: str, created: str, deleting: bool = False) -> dict[str, Any]:
    meta = {"name": name, "uid": uid, "creationTimestamp": created}
    return {"metadata": meta | ({"deletionTimestamp": created} if deleting else {})}


@pytest.mark.parametrize("reverse", [False, True])
def test_pods_made_in_the_same_second_give_the_same_choice_in_any_order(reverse: bool) -> None:
    """creationTimestamp has whole seconds: a tie must not be settled by the cache's order,
    or two replicas could speak for a node with different pods."""
    second = "2026-11-28T12:00:00Z"
    pods = [_pod("acme-coordinator-0", "u-2", second), _pod("acme-coordinator-x", "u-1", second),
            _pod("acme-coordinator-x", "u-3", second), _pod("acme-coordinator-z", "u-0", second,
                                                            deleting=True)]  # fmt: skip
    chosen = current_pod(reversed(pods) if reverse else pods)
    assert chosen is not None
    assert (chosen["metadata"]["name"], chosen["metadata"]["uid"]) == ("acme-coordinator-x", "u-3")


def test_the_newest_live_pod_speaks_for_the_node() -> None:
    pods = [_pod("b", "u-1", "2026-11-28T12:00:01Z"), _pod("a", "u-2", "2026-11-28T12:00:02Z"),
            _pod("c", "u-3", "2026-11-28T12:00:03Z", deleting=True)]  # fmt: skip
    chosen = current_pod(pods)
    assert chosen is not None
    assert chosen["metadata"]["uid"] == "u-2"
    assert current_pod([pods[2]]) == pods[2]  # only one being deleted: it still speaks
    assert current_pod([]) is None
