"""With the chain probe on, a ready pod is RUNNING only when its chain says so."""

from __future__ import annotations

import pytest

from app.domain.enums import Desired, NetworkStatus, NodeStatus
from app.domain.status import ChainFacts, NodeFacts, network_status, node_status

READY = {"desired": Desired.PRESENT, "has_service": True, "has_deployment": True,
         "pod_phase": "Running", "pod_ready": True, "chain_required": True}  # fmt: skip
ANSWERS = ChainFacts(answering=True, peer_count=1, syncing=False)


def facts(**changes: object) -> NodeFacts:
    return NodeFacts(**{**READY, **changes})  # type: ignore[arg-type]


def test_without_the_probe_a_ready_pod_is_running_as_before() -> None:
    assert node_status(facts(chain_required=False)) == (NodeStatus.RUNNING, None)


def test_a_ready_pod_not_probed_yet_is_starting() -> None:
    assert node_status(facts()) == (NodeStatus.STARTING, None)


def test_a_ready_pod_whose_chain_does_not_answer_is_starting_with_the_error() -> None:
    chain = ChainFacts(answering=False, error="connection refused")
    assert node_status(facts(chain=chain)) == (
        NodeStatus.STARTING, "the chain does not answer: connection refused")  # fmt: skip


def test_an_answering_chain_with_peers_is_running() -> None:
    assert node_status(facts(chain=ANSWERS, needs_peers=True)) == (NodeStatus.RUNNING, None)


def test_a_lone_coordinator_needs_no_peers() -> None:
    chain = ChainFacts(answering=True, peer_count=0, syncing=False)
    assert node_status(facts(chain=chain)) == (NodeStatus.RUNNING, None)


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        (ChainFacts(answering=True, peer_count=0), "no peers"),
        (ChainFacts(answering=True, peer_count=1, syncing=True), "syncing"),
        (ChainFacts(answering=True, peer_count=1, raft_member=False), "no raft membership"),
        (
            ChainFacts(answering=True, peer_count=0, raft_member=False),
            "no peers, no raft membership",
        ),
    ],
)
def test_a_peer_that_answers_but_has_not_joined_is_joining_with_what_it_lacks(
    chain: ChainFacts, reason: str
) -> None:
    assert node_status(facts(chain=chain, needs_peers=True)) == (NodeStatus.JOINING, reason)


def test_a_peer_not_joined_by_its_deadline_fails_naming_what_is_missing() -> None:
    chain = ChainFacts(answering=True, peer_count=0, raft_member=False)
    status, reason = node_status(facts(chain=chain, needs_peers=True, deadline_passed=True))
    assert status is NodeStatus.FAILED
    assert reason == "not joined within its start deadline: no peers, no raft membership"


def test_a_chain_that_never_answered_by_the_deadline_fails() -> None:
    chain = ChainFacts(answering=False, error="no answer within 3s")
    status, reason = node_status(facts(chain=chain, deadline_passed=True))
    assert status is NodeStatus.FAILED
    assert reason is not None
    assert "no answer within 3s" in reason


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        (None, "the chain has not been probed since the container started"),
        (ChainFacts(answering=False, error="timeout"), "the chain does not answer: timeout"),
        (ChainFacts(answering=True, peer_count=0), "no peers"),
        (ChainFacts(answering=True, peer_count=2, stalled=True), "no new block (IBFT)"),
    ],
)
def test_a_node_that_ran_and_lost_its_chain_is_unhealthy(
    chain: ChainFacts | None, reason: str
) -> None:
    status = node_status(facts(chain=chain, needs_peers=True, has_run=True))
    assert status == (NodeStatus.UNHEALTHY, reason)


def test_a_running_node_that_syncs_for_a_moment_stays_running() -> None:
    chain = ChainFacts(answering=True, peer_count=1, syncing=True)
    assert node_status(facts(chain=chain, needs_peers=True, has_run=True)) == (
        NodeStatus.RUNNING, None)  # fmt: skip


def test_a_flat_raft_height_is_not_a_fault() -> None:
    # The probe never marks a raft node stalled; a raft node with peers and no stall runs.
    chain = ChainFacts(answering=True, peer_count=1, raft_member=True, stalled=False)
    assert node_status(facts(chain=chain, needs_peers=True, has_run=True)) == (
        NodeStatus.RUNNING, None)  # fmt: skip


def test_a_node_that_ran_and_whose_pod_is_not_ready_is_unhealthy() -> None:
    status, reason = node_status(facts(pod_ready=False, has_run=True))
    assert status is NodeStatus.UNHEALTHY
    assert reason == "the pod is not ready"


def test_a_failed_pod_still_fails_the_node() -> None:
    assert node_status(facts(pod_phase="Failed", pod_ready=False, has_run=True))[0] is (
        NodeStatus.FAILED)  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([NodeStatus.RUNNING, NodeStatus.JOINING], NetworkStatus.STARTING),
        ([NodeStatus.RUNNING, NodeStatus.UNHEALTHY], NetworkStatus.DEGRADED),
        ([NodeStatus.UNHEALTHY], NetworkStatus.DEGRADED),
        ([NodeStatus.JOINING, NodeStatus.FAILED], NetworkStatus.FAILED),
    ],
)
def test_the_network_aggregates_the_new_states(
    statuses: list[NodeStatus], expected: NetworkStatus
) -> None:
    assert network_status(statuses, deleting=False) is expected


def test_a_peer_whose_chain_does_not_answer_yet_is_joining_then_fails_about_peers() -> None:
    chain = ChainFacts(answering=False, error="connection refused")
    said = "no peers yet (the chain does not answer: connection refused)"
    assert node_status(facts(chain=chain, needs_peers=True)) == (NodeStatus.JOINING, said)
    status, reason = node_status(facts(chain=chain, needs_peers=True, deadline_passed=True))
    assert status is NodeStatus.FAILED
    assert reason is not None
    assert reason.startswith("not joined within its start deadline: no peers")


def test_a_running_peer_whose_pod_is_not_ready_is_joining_then_fails_about_peers() -> None:
    """Its readiness probe is on geth's RPC port, which a QNM peer opens only once it joined."""
    waiting = facts(pod_ready=False, needs_peers=True)
    reason = "no peers yet (the pod is not ready: its chain does not answer yet)"
    assert node_status(waiting) == (NodeStatus.JOINING, reason)
    late = node_status(facts(pod_ready=False, needs_peers=True, deadline_passed=True))
    assert late[0] is NodeStatus.FAILED
    assert "not joined within its start deadline: no peers" in str(late[1])


def test_a_coordinator_whose_pod_is_not_ready_yet_is_starting() -> None:
    assert node_status(facts(pod_ready=False)) == (NodeStatus.STARTING, None)
