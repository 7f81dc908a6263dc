"""What a QNM node is given: its environment, the values QNM understands, and its ports."""

from __future__ import annotations

import re

import pytest

from app.domain.enums import Consensus, NodeRole
from app.domain.qnm import PORTS, NodeEnvironment, Port

# An IANA_SVC_NAME, as Kubernetes checks a container port's name.
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def test_a_coordinator_is_given_no_coordinating_ip() -> None:
    environment = NodeEnvironment(
        node_name="coordinator",
        role=NodeRole.COORDINATOR,
        consensus=Consensus.RAFT,
        own_ip="10.96.0.20",
        coordinator_ip=None,
    )
    assert environment.as_pairs() == [
        ("NODE_NAME", "coordinator"),
        ("ROLE", "coordinator"),
        ("CONSENSUS", "raft"),
        ("IP", "10.96.0.20"),
    ]


def test_a_coordinator_ignores_a_coordinator_ip_it_is_given() -> None:
    environment = NodeEnvironment(
        node_name="coordinator",
        role=NodeRole.COORDINATOR,
        consensus=Consensus.IBFT,
        own_ip="10.96.0.20",
        coordinator_ip="10.96.0.99",
    )
    assert "COORDINATING_IP" not in dict(environment.as_pairs())


def test_a_peer_is_given_its_coordinators_ip_last() -> None:
    environment = NodeEnvironment(
        node_name="peer-1",
        role=NodeRole.PEER,
        consensus=Consensus.IBFT,
        own_ip="10.96.0.21",
        coordinator_ip="10.96.0.20",
    )
    assert environment.as_pairs() == [
        ("NODE_NAME", "peer-1"),
        ("ROLE", "dynamicPeer"),
        ("CONSENSUS", "istanbul"),
        ("IP", "10.96.0.21"),
        ("COORDINATING_IP", "10.96.0.20"),
    ]


@pytest.mark.parametrize("coordinator_ip", [None, ""])
def test_a_peer_without_its_coordinators_ip_is_refused(coordinator_ip: str | None) -> None:
    environment = NodeEnvironment(
        node_name="peer-1",
        role=NodeRole.PEER,
        consensus=Consensus.RAFT,
        own_ip="10.96.0.21",
        coordinator_ip=coordinator_ip,
    )
    with pytest.raises(ValueError, match="a peer needs its coordinator's IP"):
        environment.as_pairs()


@pytest.mark.parametrize(
    ("consensus", "qnm"), [(Consensus.RAFT, "raft"), (Consensus.IBFT, "istanbul")]
)
def test_a_consensus_is_spelled_as_qnm_reads_it(consensus: Consensus, qnm: str) -> None:
    assert consensus.qnm == qnm


@pytest.mark.parametrize(
    ("role", "qnm"), [(NodeRole.COORDINATOR, "coordinator"), (NodeRole.PEER, "dynamicPeer")]
)
def test_a_node_role_is_spelled_as_qnm_reads_it(role: NodeRole, qnm: str) -> None:
    assert role.qnm == qnm


def test_every_consensus_and_role_has_a_qnm_spelling() -> None:
    assert {consensus.qnm for consensus in Consensus} == {"raft", "istanbul"}
    assert {role.qnm for role in NodeRole} == {"coordinator", "dynamicPeer"}


@pytest.mark.parametrize("port", PORTS, ids=[port.name for port in PORTS])
def test_a_port_name_is_a_valid_iana_service_name(port: Port) -> None:
    assert len(port.name) <= 15
    assert IANA_SVC_NAME.match(port.name)


def test_port_names_and_numbers_are_unique() -> None:
    names = [port.name for port in PORTS]
    numbers = [port.number for port in PORTS]
    assert len(set(names)) == len(names)
    assert len(set(numbers)) == len(numbers)


def test_the_unused_devp2p_port_30303_is_not_exposed() -> None:
    assert 30303 not in {port.number for port in PORTS}
