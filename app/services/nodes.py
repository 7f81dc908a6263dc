"""Node mutations: add a dynamic peer, delete one; and what creating any node records.

Example::

    async with UnitOfWork.begin(sessions) as work:
        result = await add_node(work, tenant_id, network_id, "peer-1", 300.0)
"""

from __future__ import annotations

import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import Desired, NodeRole, NodeStatus, OperationKind, OperationState
from app.domain.errors import ErrorCode
from app.domain.names import node_name_problem, object_name, tidy
from app.services.results import Result, name_refusal, refused
from app.store import desired, operations
from app.store.models import Network, Node, NodeStatusChange, Operation, new_id, utcnow
from app.store.read_models import NetworkView, NodeView, OperationView
from app.store.unit import UnitOfWork


def network_refusal(network: Network | None, field: str, deleting: str) -> Result | None:
    """NOT_FOUND for no network (or another tenant's), BEING_DELETED (saying ``deleting``) for
    one marked for deletion; None for a network a change may be made to."""
    if network is None:
        return refused(field, "no such network", ErrorCode.NOT_FOUND)
    if network.desired is Desired.ABSENT:
        return refused(field, deleting.format(name=network.name), ErrorCode.BEING_DELETED)
    return None


async def object_name_refusal(
    session: AsyncSession, tenant_id: str, network: str, node: str, field: str, new: bool
) -> Result | None:
    """NAME_TAKEN if another node of the tenant already has the objects ``<network>-<node>``
    would be named (Kubernetes object names are unique in the tenant's namespace); ``new``:
    the network does not exist yet."""
    name = object_name(network, node)
    owner = await desired.object_name_owner(session, tenant_id, name, network if new else None)
    if owner is None:
        return None
    return refused(field, f'the Service and Deployment would be named "{name}", which node '
                   f'"{owner[1]}" of network "{owner[0]}" already uses; choose another name',
                   ErrorCode.NAME_TAKEN)  # fmt: skip


def limit_refusal(room: desired.Room | None, new_network: bool) -> Result | None:
    """A LIMIT_EXCEEDED refusal if the tenant's counts, with the new node (and network)
    counted in by ``desired.claim``, pass its limits; NOT_FOUND for no tenant."""
    if room is None:
        return refused("name", "no such tenant", ErrorCode.NOT_FOUND)
    if new_network and room.networks > room.max_networks:
        return refused("name", f"your tenant may run at most {room.max_networks} networks; "
                       "delete one first", ErrorCode.LIMIT_EXCEEDED)  # fmt: skip
    if room.nodes > room.max_nodes:
        return refused("name", f"your tenant may run at most {room.max_nodes} nodes; "
                       "delete one first", ErrorCode.LIMIT_EXCEEDED)  # fmt: skip
    return None


async def record_new_node(
    session: AsyncSession,
    network: Network,
    name: str,
    role: NodeRole,
    kind: OperationKind,
    start_deadline: float,
) -> Result:
    """Insert the node (and its network, if new), its first history entry and the operation;
    refused with NAME_TAKEN when another request took the name first."""
    now = utcnow()
    new = network.id is None  # a network being created: its id is known before it is inserted
    if new:
        network.id = new_id()
    node = Node(
        id=new_id(),
        network_id=network.id,
        name=name,
        role=role,
        status=NodeStatus.PENDING,
        status_changed_at=now,
        start_deadline=now + datetime.timedelta(seconds=start_deadline),
    )
    operation = Operation(
        tenant_id=network.tenant_id, kind=kind, network_id=network.id, node_id=node.id
    )
    # A node's history starts with its creation.
    first = NodeStatusChange(node_id=node.id, status=node.status, at=now)
    try:
        await desired.insert(session, network.tenant_id,
                             *([network] if new else []), node, first, operation)  # fmt: skip
    except IntegrityError:
        # Two callers raced for one name: the unique constraint decided.
        return refused("name", "that name was just taken by another request",
                       ErrorCode.NAME_TAKEN)  # fmt: skip
    return Result(
        network=NetworkView.of(network, [node.status]),
        node=NodeView.of(node, network),
        operation=OperationView.of(operation),
    )


async def add_node(
    work: UnitOfWork, tenant_id: str, network_id: str, name: str, start_deadline: float
) -> Result:
    session, name = work.session, tidy(name)
    network = await desired.network_of_tenant(session, tenant_id, network_id)
    if refusal := network_refusal(network, "networkId", 'network "{name}" is being deleted'):
        return refusal
    assert network is not None
    errors = name_refusal("name", name, node_name_problem(network.name, name))
    if errors:
        return Result(errors=errors)
    if await desired.node_named(session, network_id, name) is not None:
        return refused("name", f'network "{network.name}" already has a node named "{name}"',
                       ErrorCode.NAME_TAKEN)  # fmt: skip
    if taken := await object_name_refusal(
        session, tenant_id, network.name, name, "name", new=False
    ):
        return taken
    room = await desired.claim(session, tenant_id, networks=0, nodes=1)
    if limited := limit_refusal(room, new_network=False):
        return limited
    added = await record_new_node(
        session, network, name, NodeRole.PEER, OperationKind.NODE_ADD, start_deadline
    )
    return Result(node=added.node, operation=added.operation, errors=added.errors)


async def delete_node(
    work: UnitOfWork, tenant_id: str, node_id: str, force: bool = False
) -> Result:
    """Mark the node for deletion (the reconciler takes a raft member out of raft first:
    app/control/raft.py); ``force`` removes its objects without (or after a failed) raft step.
    Asking again after a failed raft step starts it over with a new deadline."""
    session = work.session
    found = await desired.node_of_tenant(session, tenant_id, node_id)
    # Another tenant's node is indistinguishable from one that does not exist.
    if found is None:
        return refused("id", "no such node", ErrorCode.NOT_FOUND)
    node, network = found
    if node.role is NodeRole.COORDINATOR:
        others = [n for n in await desired.nodes_of(session, network.id) if n.id != node.id]
        if others:
            return refused("id", f'the coordinator of network "{network.name}" cannot be '
                           f"deleted while it has {len(others)} other node(s): delete them "
                           "first, or delete the network", ErrorCode.HAS_PEERS)  # fmt: skip
        return refused("id", "a network's coordinator goes with its network: delete the "
                       "network instead", ErrorCode.COORDINATOR)  # fmt: skip
    if network.desired is Desired.ABSENT:
        return refused("id", "this node is already being deleted", ErrorCode.BEING_DELETED)
    kinds = (OperationKind.NODE_DELETE,)
    if node.desired is Desired.ABSENT:
        under_way = await operations.unfinished(session, kinds=kinds, node_id=node.id)
        if node.delete_force or (under_way and not force):
            return refused("id", "this node is already being deleted", ErrorCode.BEING_DELETED)
        for operation in under_way:  # superseded by the forced deletion
            operation.state, operation.finished_at = OperationState.FAILED, utcnow()
            operation.message = "superseded by a nodeDelete with force: true"
    node.desired = Desired.ABSENT
    node.delete_force = node.delete_force or force
    node.delete_deadline = None  # the reconciler's first pass sets it
    node.retry_reason = None
    operation = await operations.add(
        session,
        Operation(tenant_id=tenant_id, kind=OperationKind.NODE_DELETE, network_id=network.id,
                  node_id=node.id),
    )  # fmt: skip
    return Result(node=NodeView.of(node, network), operation=OperationView.of(operation))
