"""Read models: immutable snapshots of networks, nodes and operations.

The GraphQL layer renders these and the event bus carries them, so a node change is read from
the database once and shared by every subscriber.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import Row

from app.domain.enums import (
    Consensus,
    Desired,
    NetworkStatus,
    NodeRole,
    NodeStatus,
    OperationKind,
    OperationState,
)
from app.domain.names import object_name
from app.domain.status import network_status
from app.store.models import Network, Node, NodeStatusChange, Operation

V = TypeVar("V")


def _built(cls: type[V], values: tuple[Any, ...]) -> V:
    """A frozen view from all its fields' values, in their order, without the generated
    ``__init__``: that sets each field through ``object.__setattr__`` and took more than
    twice as long (a list builds hundreds of views a request). Still frozen afterwards."""
    view = object.__new__(cls)
    view.__dict__.update(zip(_FIELDS[cls], values, strict=True))
    return view


@dataclass(frozen=True)
class ChainView:
    """What the chain probe last wrote for a node (see app/control/chain.py)."""

    block_number: int | None
    peer_count: int | None
    syncing: bool | None
    enode: str | None
    client_version: str | None
    raft_role: str | None
    raft_id: int | None
    validators: tuple[str, ...] | None
    probed_at: datetime.datetime
    error: str | None

    @classmethod
    def of(cls, node: Node | Row[Any]) -> ChainView | None:
        """From a node, or a row with its ``chain_*`` columns."""
        if node.chain_probed_at is None:
            return None
        validators = json.loads(node.chain_validators) if node.chain_validators else None
        return cls(
            block_number=node.chain_block_number, peer_count=node.chain_peer_count,
            syncing=node.chain_syncing, enode=node.chain_enode,
            client_version=node.chain_client_version, raft_role=node.chain_raft_role,
            raft_id=node.chain_raft_id,
            validators=tuple(validators) if validators is not None else None,
            probed_at=node.chain_probed_at, error=node.chain_error,
        )  # fmt: skip


@dataclass(frozen=True)
class NodeView:
    id: str
    tenant_id: str
    network_id: str
    network_name: str
    name: str
    role: NodeRole
    status: NodeStatus
    status_reason: str | None
    status_changed_at: datetime.datetime
    service_ip: str | None
    pod_name: str | None
    pod_phase: str | None
    pod_ready: bool
    pod_ip: str | None
    restart_count: int
    pod_reason: str | None
    pod_message: str | None
    pod_started_at: datetime.datetime | None
    created_at: datetime.datetime
    revision: int
    chain: ChainView | None = None

    @property
    def object_name(self) -> str:
        return object_name(self.network_name, self.name)

    @classmethod
    def of(cls, node: Node, network: Network) -> NodeView:
        return cls._of(node, network.tenant_id, network.name)

    @classmethod
    def of_row(cls, row: Row[Any]) -> NodeView:
        """From a row of ``NODE_VIEW_COLUMNS``: no ORM object. By position, not by name: a
        list reads hundreds of these rows, and a Row's attribute lookups (30 a row) cost
        more than the rest of building the view (measured with py-spy, bench/list_throughput.py)."""
        (id_, network_id, name, role, status, status_reason, status_changed_at, service_ip,
         pod_name, pod_phase, pod_ready, pod_ip, restart_count, pod_reason, pod_message,
         pod_started_at, created_at, revision, probed_at, block_number, peer_count, syncing,
         enode, client_version, raft_role, raft_id, validators, chain_error, tenant_id,
         network_name) = row[:NODE_VIEW_WIDTH]  # fmt: skip
        chain = None
        if probed_at is not None:
            chain = ChainView(
                block_number, peer_count, syncing, enode, client_version, raft_role, raft_id,
                tuple(json.loads(validators)) if validators else None, probed_at, chain_error,
            )  # fmt: skip
        return _built(cls, (
            id_, tenant_id, network_id, network_name, name, role, status, status_reason,
            status_changed_at, service_ip, pod_name, pod_phase, pod_ready, pod_ip,
            restart_count, pod_reason, pod_message, pod_started_at, created_at, revision, chain,
        ))  # fmt: skip

    @classmethod
    def _of(cls, node: Node | Row[Any], tenant_id: str, network_name: str) -> NodeView:
        """From anything with the node's columns as attributes: an ORM node or a row."""
        return cls(
            id=node.id,
            tenant_id=tenant_id,
            network_id=node.network_id,
            network_name=network_name,
            name=node.name,
            role=node.role,
            status=node.status,
            status_reason=node.status_reason,
            status_changed_at=node.status_changed_at,
            service_ip=node.service_ip,
            pod_name=node.pod_name,
            pod_phase=node.pod_phase,
            pod_ready=node.pod_ready,
            pod_ip=node.pod_ip,
            restart_count=node.restart_count,
            pod_reason=node.pod_reason,
            pod_message=node.pod_message,
            pod_started_at=node.pod_started_at,
            created_at=node.created_at,
            revision=node.revision,
            chain=ChainView.of(node),
        )


# The columns ``NodeView.of_row`` reads, in its order (reads of many nodes as plain rows):
# the node's, its chain facts, and its network's ``tenant_id`` and ``name``.
NODE_VIEW_COLUMNS = (
    Node.id, Node.network_id, Node.name, Node.role, Node.status, Node.status_reason,
    Node.status_changed_at, Node.service_ip, Node.pod_name, Node.pod_phase, Node.pod_ready,
    Node.pod_ip, Node.restart_count, Node.pod_reason, Node.pod_message, Node.pod_started_at,
    Node.created_at, Node.revision, Node.chain_probed_at, Node.chain_block_number,
    Node.chain_peer_count, Node.chain_syncing, Node.chain_enode, Node.chain_client_version,
    Node.chain_raft_role, Node.chain_raft_id, Node.chain_validators, Node.chain_error,
    Network.tenant_id, Network.name.label("network_name"),
)  # fmt: skip
NODE_VIEW_WIDTH = len(NODE_VIEW_COLUMNS)


@dataclass(frozen=True)
class NetworkView:
    id: str
    tenant_id: str
    name: str
    consensus: Consensus
    status: NetworkStatus
    external_coordinator_ip: str | None
    created_at: datetime.datetime
    storage_size: str | None = None  # None: the installation's settings
    storage_class: str | None = None  # "": the cluster's default class; None: the settings'
    # Its coordinator's ClusterIP, read with its nodes' statuses (``reads.network_views``);
    # with ``coordinator_known`` False (a view a mutation built) it was not read.
    coordinator_ip: str | None = None
    coordinator_known: bool = False

    @classmethod
    def of_row(
        cls, row: Row[Any], node_statuses: list[NodeStatus], coordinator_ip: str | None
    ) -> NetworkView:
        """From a row of ``reads.NETWORK_VIEW_COLUMNS``, by position (see ``NodeView.of_row``),
        with its coordinator's IP as read."""
        (id_, tenant_id, name, consensus, desired, external_ip, created_at, storage_size,
         storage_class) = row[:_NETWORK_WIDTH]  # fmt: skip
        status = network_status(node_statuses, desired is Desired.ABSENT)
        return _built(cls, (id_, tenant_id, name, consensus, status, external_ip, created_at,
                            storage_size, storage_class, coordinator_ip, True))  # fmt: skip

    @classmethod
    def of(
        cls,
        network: Network | Row[Any],  # or a row of its columns (reads.NETWORK_VIEW_COLUMNS)
        node_statuses: list[NodeStatus],
        coordinator_ip: str | None = None,
        coordinator_known: bool = False,
    ) -> NetworkView:
        deleting = network.desired is Desired.ABSENT
        return cls(
            id=network.id,
            tenant_id=network.tenant_id,
            name=network.name,
            consensus=network.consensus,
            status=network_status(node_statuses, deleting),
            external_coordinator_ip=network.external_coordinator_ip,
            created_at=network.created_at,
            storage_size=network.storage_size,
            storage_class=network.storage_class,
            coordinator_ip=coordinator_ip,
            coordinator_known=coordinator_known,
        )


@dataclass(frozen=True)
class OperationView:
    id: str
    tenant_id: str
    kind: OperationKind
    state: OperationState
    network_id: str | None
    node_id: str | None
    message: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    finished_at: datetime.datetime | None

    @classmethod
    def of(cls, op: Operation) -> OperationView:
        return cls(
            id=op.id,
            tenant_id=op.tenant_id,
            kind=op.kind,
            state=op.state,
            network_id=op.network_id,
            node_id=op.node_id,
            message=op.message,
            created_at=op.created_at,
            updated_at=op.updated_at,
            finished_at=op.finished_at,
        )


@dataclass(frozen=True)
class StatusChangeView:
    status: NodeStatus
    reason: str | None
    at: datetime.datetime

    @classmethod
    def of(cls, change: NodeStatusChange) -> StatusChangeView:
        return cls(status=change.status, reason=change.reason, at=change.at)


_NETWORK_WIDTH = 9  # the columns NetworkView.of_row reads (reads.NETWORK_VIEW_COLUMNS)
# The fields of the views ``_built`` makes, in order.
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (NodeView, NetworkView)
}
