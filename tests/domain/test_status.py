"""A node's status follows a fixed order of facts; a network's aggregates its nodes'."""

from __future__ import annotations

import pytest

from app.domain.enums import Desired, NetworkStatus, NodeStatus
from app.domain.status import FAILING_REASONS, NodeFacts, network_status, node_status

PRESENT = Desired.PRESENT


# -- node_status, in its order of decision --------------------------------------------------


@pytest.mark.parametrize(
    "facts",
    [
        NodeFacts(desired=Desired.ABSENT),
        NodeFacts(
            desired=Desired.ABSENT,
            has_service=True,
            has_deployment=True,
            pod_phase="Running",
            pod_ready=True,
        ),
        NodeFacts(desired=Desired.ABSENT, error="the name is taken", deadline_passed=True),
        NodeFacts(desired=Desired.ABSENT, pod_phase="Failed", reason="CrashLoopBackOff"),
    ],
)
def test_a_node_asked_to_be_absent_is_deleting_whatever_else_is_true(facts: NodeFacts) -> None:
    assert node_status(facts) == (NodeStatus.DELETING, None)


def test_a_reconcile_error_fails_the_node_with_that_error_even_if_its_pod_runs() -> None:
    facts = NodeFacts(
        desired=PRESENT,
        has_service=True,
        has_deployment=True,
        pod_phase="Running",
        pod_ready=True,
        error='a Service "acme-peer" not made by QaaS already exists',
    )
    assert node_status(facts) == (
        NodeStatus.FAILED,
        'a Service "acme-peer" not made by QaaS already exists',
    )


def test_a_running_and_ready_pod_makes_the_node_running() -> None:
    facts = NodeFacts(
        desired=PRESENT, has_service=True, has_deployment=True, pod_phase="Running", pod_ready=True
    )
    assert node_status(facts) == (NodeStatus.RUNNING, None)


def test_a_running_and_ready_pod_beats_a_passed_deadline() -> None:
    facts = NodeFacts(desired=PRESENT, pod_phase="Running", pod_ready=True, deadline_passed=True)
    assert node_status(facts) == (NodeStatus.RUNNING, None)


def test_a_running_pod_that_is_not_ready_is_still_starting() -> None:
    facts = NodeFacts(desired=PRESENT, has_service=True, has_deployment=True, pod_phase="Running")
    assert node_status(facts) == (NodeStatus.STARTING, None)


def test_a_failed_pod_fails_the_node_with_reason_and_message() -> None:
    facts = NodeFacts(
        desired=PRESENT,
        has_deployment=True,
        pod_phase="Failed",
        reason="Error",
        message="exit code 1",
    )
    assert node_status(facts) == (NodeStatus.FAILED, "Error: exit code 1")


def test_a_failed_pod_without_a_message_fails_with_its_reason_alone() -> None:
    facts = NodeFacts(desired=PRESENT, pod_phase="Failed", reason="OOMKilled")
    assert node_status(facts) == (NodeStatus.FAILED, "OOMKilled")


def test_a_failed_pod_without_reason_or_message_still_says_why() -> None:
    facts = NodeFacts(desired=PRESENT, pod_phase="Failed")
    assert node_status(facts) == (NodeStatus.FAILED, "the pod failed")


def test_a_failed_pod_with_a_message_but_no_reason_does_not_say_none() -> None:
    facts = NodeFacts(desired=PRESENT, pod_phase="Failed", message="the node was evicted")
    status, detail = node_status(facts)
    assert status is NodeStatus.FAILED
    assert detail is not None
    assert "None" not in detail


@pytest.mark.parametrize(
    "reason",
    [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    ],
)
def test_a_waiting_reason_that_will_not_fix_itself_fails_a_pending_pod(reason: str) -> None:
    facts = NodeFacts(
        desired=PRESENT,
        has_service=True,
        has_deployment=True,
        pod_phase="Pending",
        reason=reason,
        message="something went wrong",
    )
    assert node_status(facts) == (NodeStatus.FAILED, f"{reason}: something went wrong")


def test_the_failing_reasons_tested_are_all_the_failing_reasons() -> None:
    assert {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    } == FAILING_REASONS


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", None])
def test_a_waiting_reason_that_passes_leaves_the_node_starting(reason: str | None) -> None:
    facts = NodeFacts(desired=PRESENT, has_deployment=True, pod_phase="Pending", reason=reason)
    assert node_status(facts) == (NodeStatus.STARTING, None)


def test_a_failing_reason_beats_a_passed_deadline() -> None:
    facts = NodeFacts(
        desired=PRESENT,
        pod_phase="Pending",
        reason="ImagePullBackOff",
        message='Back-off pulling image "nope"',
        deadline_passed=True,
    )
    assert node_status(facts) == (
        NodeStatus.FAILED,
        'ImagePullBackOff: Back-off pulling image "nope"',
    )


def test_a_passed_deadline_fails_the_node_and_names_the_last_reason_seen() -> None:
    facts = NodeFacts(
        desired=PRESENT,
        has_service=True,
        has_deployment=True,
        pod_phase="Pending",
        reason="ContainerCreating",
        deadline_passed=True,
    )
    status, detail = node_status(facts)
    assert status is NodeStatus.FAILED
    assert detail == (
        "the node was not running within its start deadline (last seen: ContainerCreating)"
    )


def test_a_passed_deadline_with_no_reason_seen_says_only_the_deadline() -> None:
    facts = NodeFacts(desired=PRESENT, has_service=True, deadline_passed=True)
    assert node_status(facts) == (
        NodeStatus.FAILED,
        "the node was not running within its start deadline",
    )


@pytest.mark.parametrize(
    "facts",
    [
        NodeFacts(desired=PRESENT, has_service=True, has_deployment=True),
        NodeFacts(desired=PRESENT, has_deployment=True),
        NodeFacts(desired=PRESENT, has_service=True, has_deployment=True, pod_phase="Pending"),
        NodeFacts(desired=PRESENT, pod_phase="Pending"),
        NodeFacts(desired=PRESENT, pod_phase="Succeeded"),
    ],
)
def test_a_pod_or_a_deployment_makes_the_node_starting(facts: NodeFacts) -> None:
    assert node_status(facts) == (NodeStatus.STARTING, None)


def test_a_service_alone_makes_the_node_provisioning() -> None:
    assert node_status(NodeFacts(desired=PRESENT, has_service=True)) == (
        NodeStatus.PROVISIONING,
        None,
    )


def test_a_node_with_nothing_in_the_cluster_is_pending() -> None:
    assert node_status(NodeFacts(desired=PRESENT)) == (NodeStatus.PENDING, None)


# -- network_status --------------------------------------------------------------------------

RUNNING, FAILED = NodeStatus.RUNNING, NodeStatus.FAILED
PENDING, STARTING = NodeStatus.PENDING, NodeStatus.STARTING
PROVISIONING = NodeStatus.PROVISIONING


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([RUNNING], NetworkStatus.RUNNING),
        ([RUNNING, RUNNING, RUNNING], NetworkStatus.RUNNING),
        ([RUNNING, FAILED], NetworkStatus.DEGRADED),
        ([RUNNING, STARTING, FAILED], NetworkStatus.DEGRADED),
        ([FAILED], NetworkStatus.FAILED),
        ([FAILED, FAILED], NetworkStatus.FAILED),
        ([FAILED, STARTING, PENDING], NetworkStatus.FAILED),
        ([PENDING], NetworkStatus.PENDING),
        ([PENDING, PENDING], NetworkStatus.PENDING),
        ([PENDING, STARTING], NetworkStatus.STARTING),
        ([PROVISIONING], NetworkStatus.STARTING),
        ([RUNNING, PENDING], NetworkStatus.STARTING),
        ([RUNNING, STARTING], NetworkStatus.STARTING),
        ([], NetworkStatus.PENDING),
    ],
)
def test_a_network_aggregates_its_nodes(nodes: list[NodeStatus], expected: NetworkStatus) -> None:
    assert network_status(nodes, deleting=False) == expected


@pytest.mark.parametrize("nodes", [[RUNNING, RUNNING], [RUNNING, FAILED], [FAILED], [PENDING], []])
def test_a_network_being_deleted_is_deleting_whatever_its_nodes(nodes: list[NodeStatus]) -> None:
    assert network_status(nodes, deleting=True) == NetworkStatus.DELETING


def test_a_network_reads_its_nodes_from_any_iterable_once() -> None:
    assert network_status(iter([RUNNING, FAILED]), deleting=False) == NetworkStatus.DEGRADED


def test_a_pod_no_node_can_take_leaves_its_node_pending_with_the_schedulers_message() -> None:
    facts = NodeFacts(
        desired=PRESENT, has_service=True, has_deployment=True, pod_phase="Pending",
        reason="Unschedulable", message="0/1 nodes are available: 1 Insufficient cpu.",
    )  # fmt: skip
    assert node_status(facts) == (
        NodeStatus.PENDING,
        "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.",
    )


def test_the_start_deadline_fails_an_unschedulable_node_with_that_reason() -> None:
    facts = NodeFacts(
        desired=PRESENT, has_deployment=True, pod_phase="Pending", reason="Unschedulable",
        message="0/1 nodes are available: 1 Insufficient cpu.", deadline_passed=True,
    )  # fmt: skip
    status, reason = node_status(facts)
    assert status is NodeStatus.FAILED
    assert reason is not None
    assert reason.startswith("Unschedulable: 0/1 nodes are available")


# -- a node the reconciler keeps retrying ----------------------------------------------------

RETRYING = "Retrying: Forbidden: exceeded quota: count/deployments.apps=0"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (NodeFacts(desired=PRESENT, retrying=RETRYING), NodeStatus.PENDING),
        (NodeFacts(desired=PRESENT, has_service=True, retrying=RETRYING), NodeStatus.PROVISIONING),
        (NodeFacts(desired=PRESENT, has_deployment=True, retrying=RETRYING), NodeStatus.STARTING),
        (NodeFacts(desired=Desired.ABSENT, retrying=RETRYING), NodeStatus.DELETING),
    ],
)
def test_a_retried_call_is_the_reason_of_a_node_still_on_its_way(
    facts: NodeFacts, expected: NodeStatus
) -> None:
    assert node_status(facts) == (expected, RETRYING)


def test_the_start_deadline_fails_a_retried_node_naming_the_call() -> None:
    facts = NodeFacts(desired=PRESENT, has_service=True, retrying=RETRYING, deadline_passed=True)
    status, reason = node_status(facts)
    assert status is NodeStatus.FAILED
    assert reason == f"the node was not running within its start deadline (last seen: {RETRYING})"


def test_a_running_pod_or_a_failure_beats_a_retried_call() -> None:
    running = NodeFacts(
        desired=PRESENT, has_deployment=True, pod_phase="Running", pod_ready=True, retrying=RETRYING
    )
    assert node_status(running) == (NodeStatus.RUNNING, None)
    assert node_status(NodeFacts(desired=PRESENT, error="taken", retrying=RETRYING)) == (
        NodeStatus.FAILED,
        "taken",
    )
