"""The vocabulary of the domain: consensus, roles, desired state, statuses, operations."""

from __future__ import annotations

import enum


class Consensus(enum.StrEnum):
    RAFT = "RAFT"
    IBFT = "IBFT"

    @property
    def qnm(self) -> str:
        """The value QNM reads from its CONSENSUS variable."""
        return {Consensus.RAFT: "raft", Consensus.IBFT: "istanbul"}[self]


class NodeRole(enum.StrEnum):
    COORDINATOR = "COORDINATOR"
    PEER = "PEER"

    @property
    def qnm(self) -> str:
        """The value QNM reads from its ROLE variable (``non-coordinator`` does nothing)."""
        return {NodeRole.COORDINATOR: "coordinator", NodeRole.PEER: "dynamicPeer"}[self]


class Role(enum.StrEnum):
    """What a token may do within its tenant."""

    ADMIN = "ADMIN"  # everything, tokens included
    MEMBER = "MEMBER"  # networks and nodes
    VIEWER = "VIEWER"  # read only

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


class Desired(enum.StrEnum):
    """What the user asked for: the object should exist, or be gone."""

    PRESENT = "PRESENT"
    ABSENT = "ABSENT"


class NodeStatus(enum.StrEnum):
    PENDING = "PENDING"  # accepted; nothing in the cluster yet
    PROVISIONING = "PROVISIONING"  # Service and Deployment being created
    STARTING = "STARTING"  # objects exist; the pod is not running and ready yet
    JOINING = "JOINING"  # the chain answers but has no peers (or raft membership) yet, or syncs
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"  # was running; its chain stopped answering, lost its peers, stalled
    FAILED = "FAILED"  # with a reason: image pull, crash loop, exit, deadline, conflict
    DELETING = "DELETING"


class NetworkStatus(enum.StrEnum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"  # every node running
    DEGRADED = "DEGRADED"  # some nodes running, some failed
    FAILED = "FAILED"  # no node running and at least one failed
    DELETING = "DELETING"


class OperationKind(enum.StrEnum):
    NETWORK_CREATE = "NETWORK_CREATE"
    NETWORK_JOIN = "NETWORK_JOIN"
    NODE_ADD = "NODE_ADD"
    NODE_DELETE = "NODE_DELETE"
    NETWORK_DELETE = "NETWORK_DELETE"


class OperationState(enum.StrEnum):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    STARTING = "STARTING"
    DELETING = "DELETING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (OperationState.SUCCEEDED, OperationState.FAILED)
