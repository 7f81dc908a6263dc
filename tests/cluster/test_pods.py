"""A node's pod waiting for its new data claim to bind is starting, not unschedulable; a pod no
node can take still is. The scheduler's words are those of kube-scheduler 1.20 (the sandbox's):
its VolumeBinding filter says "pod has unbound immediate PersistentVolumeClaims"."""

from __future__ import annotations

from typing import Any

import pytest

from app.cluster.pods import WAITING_FOR_STORAGE, observe
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
