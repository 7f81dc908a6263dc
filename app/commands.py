"""What the mutations do: validate, write the desired state in one transaction, return at once.

None of these waits for Kubernetes: the reconciler converges the cluster afterwards. A caller's
mistake comes back as a ``UserError`` (field, message, code), never as an exception.

Example::

    result = await create_network(sessions, "acme", Consensus.RAFT)
    result.errors or result.network
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Network, Node, NodeStatusChange, Operation, Tenant, utcnow
from app.domain.enums import Consensus, Desired, NodeRole, NodeStatus, OperationKind
from app.domain.names import (
    COORDINATOR_NAME,
    DEFAULT_JOIN_NODE_NAME,
    MAX_NETWORK_NAME,
    MAX_OBJECT_NAME,
    combined_name_problem,
    name_problem,
)
from app.views import NetworkView, NodeView, OperationView


class ErrorCode(enum.StrEnum):
    """Stable, machine-readable reasons a mutation was refused."""

    INVALID_ID = "INVALID_ID"
    INVALID_NAME = "INVALID_NAME"
    NAME_TAKEN = "NAME_TAKEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_IP = "INVALID_IP"
    BEING_DELETED = "BEING_DELETED"
    COORDINATOR = "COORDINATOR"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INVALID_INPUT = "INVALID_INPUT"


@dataclass(frozen=True)
class UserError:
    field: tuple[str, ...]
    message: str
    code: ErrorCode


@dataclass(frozen=True)
class Result:
    network: NetworkView | None = None
    node: NodeView | None = None
    operation: OperationView | None = None
    errors: list[UserError] = field(default_factory=list)


def _failed(path: str, message: str, code: ErrorCode) -> Result:
    return Result(errors=[UserError(("input", path), message, code)])


def _name_errors(path: str, name: str, limit: int, network: str | None = None) -> list[UserError]:
    problem = name_problem(name, limit)
    if problem is None and network is not None:
        problem = combined_name_problem(network, name)
    return (
        [UserError(("input", path), f'"{name}" {problem}', ErrorCode.INVALID_NAME)]
        if problem
        else []
    )


async def _network_named(session: AsyncSession, tenant_id: str, name: str) -> Network | None:
    return await session.scalar(
        select(Network).where(Network.tenant_id == tenant_id, Network.name == name)
    )


async def _limit_error(session: AsyncSession, tenant_id: str, new_network: bool) -> Result | None:
    """A LIMIT_EXCEEDED error if one more node (and network) would pass the tenant's limits."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        return _failed("name", "no such tenant", ErrorCode.NOT_FOUND)
    if new_network:
        networks = await session.scalar(
            select(func.count()).select_from(Network).where(Network.tenant_id == tenant_id)
        )
        if (networks or 0) >= tenant.max_networks:
            return _failed("name", f"your tenant may run at most {tenant.max_networks} "
                           "networks; delete one first", ErrorCode.LIMIT_EXCEEDED)  # fmt: skip
    nodes = await session.scalar(
        select(func.count()).select_from(Node).join(Network).where(Network.tenant_id == tenant_id)
    )
    if (nodes or 0) >= tenant.max_nodes:
        return _failed("name", f"your tenant may run at most {tenant.max_nodes} nodes; "
                       "delete one first", ErrorCode.LIMIT_EXCEEDED)  # fmt: skip
    return None


def _taken(name: str, existing: Network) -> Result:
    if existing.desired is Desired.ABSENT:
        return _failed("name", f'network "{name}" is being deleted; try again when it is gone',
                       ErrorCode.BEING_DELETED)  # fmt: skip
    return _failed("name", f'a network named "{name}" already exists', ErrorCode.NAME_TAKEN)


def _new_node(network: Network, name: str, role: NodeRole, deadline: float) -> Node:
    now = utcnow()
    return Node(
        network=network,
        name=name,
        role=role,
        status=NodeStatus.PENDING,
        status_changed_at=now,
        start_deadline=now + datetime.timedelta(seconds=deadline),
    )


def _first_change(node: Node) -> NodeStatusChange:
    """A node's history starts with its creation."""
    return NodeStatusChange(node_id=node.id, status=node.status, at=node.status_changed_at)


async def _commit_new(
    sessions: async_sessionmaker[AsyncSession],
    network: Network,
    node: Node,
    kind: OperationKind,
    name_field: str,
) -> Result:
    async with sessions() as session:
        try:
            async with session.begin():
                session.add_all([network, node])
                await session.flush()
                operation = Operation(
                    tenant_id=network.tenant_id, kind=kind, network_id=network.id, node_id=node.id
                )
                session.add_all([operation, _first_change(node)])
                await session.flush()
                result = Result(
                    network=NetworkView.of(network, [node.status]),
                    node=NodeView.of(node, network),
                    operation=OperationView.of(operation),
                )
        except IntegrityError:
            # Two callers raced for one name: the unique constraint decided.
            return _failed(name_field, "that name was just taken by another request",
                           ErrorCode.NAME_TAKEN)  # fmt: skip
    return result


async def create_network(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    name: str,
    consensus: Consensus,
    start_deadline: float = 300.0,
) -> Result:
    limit = MAX_OBJECT_NAME - len("-" + COORDINATOR_NAME)  # "<name>-coordinator" fits in 63
    errors = _name_errors("name", name, limit)
    if errors:
        return Result(errors=errors)
    network = Network(tenant_id=tenant_id, name=name, consensus=consensus)
    return await _open_network(
        sessions, network, COORDINATOR_NAME, NodeRole.COORDINATOR, OperationKind.NETWORK_CREATE,
        start_deadline,
    )  # fmt: skip


async def _open_network(
    sessions: async_sessionmaker[AsyncSession],
    network: Network,
    node_name: str,
    role: NodeRole,
    kind: OperationKind,
    start_deadline: float,
) -> Result:
    """Record a new network and its first node, unless the name is taken or the tenant full."""
    async with sessions() as session:
        existing = await _network_named(session, network.tenant_id, network.name)
        limited = await _limit_error(session, network.tenant_id, new_network=True)
    if existing is not None:
        return _taken(network.name, existing)
    if limited:
        return limited
    node = _new_node(network, node_name, role, start_deadline)
    return await _commit_new(sessions, network, node, kind, "name")


def _ip_problem(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return f'"{value}" is not an IP address'
    if address.version != 4:
        return "QNM advertises IPv4 addresses only"
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        return f"{value} cannot be dialled by peers: give the coordinator's reachable address"
    return None


async def join_network(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    name: str,
    coordinator_ip: str,
    consensus: Consensus,
    node_name: str = DEFAULT_JOIN_NODE_NAME,
    start_deadline: float = 300.0,
) -> Result:
    errors = _name_errors("name", name, MAX_NETWORK_NAME)
    errors += _name_errors(
        "nodeName", node_name, MAX_NETWORK_NAME, network=None if errors else name
    )
    problem = _ip_problem(coordinator_ip.strip())
    if problem:
        errors.append(UserError(("input", "coordinatorIp"), problem, ErrorCode.INVALID_IP))
    if errors:
        return Result(errors=errors)
    network = Network(
        tenant_id=tenant_id,
        name=name,
        consensus=consensus,
        external_coordinator_ip=coordinator_ip.strip(),
    )
    return await _open_network(
        sessions, network, node_name, NodeRole.PEER, OperationKind.NETWORK_JOIN, start_deadline
    )


async def add_node(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    network_id: str,
    name: str,
    start_deadline: float = 300.0,
) -> Result:
    async with sessions() as session:
        network = await session.get(Network, network_id)
        if network is None or network.tenant_id != tenant_id:
            return _failed("networkId", "no such network", ErrorCode.NOT_FOUND)
        if network.desired is Desired.ABSENT:
            return _failed("networkId", f'network "{network.name}" is being deleted',
                           ErrorCode.BEING_DELETED)  # fmt: skip
        errors = _name_errors("name", name, MAX_NETWORK_NAME, network=network.name)
        if errors:
            return Result(errors=errors)
        taken = await session.scalar(
            select(Node.id).where(Node.network_id == network_id, Node.name == name)
        )
        if taken is not None:
            return _failed("name", f'network "{network.name}" already has a node named "{name}"',
                           ErrorCode.NAME_TAKEN)  # fmt: skip
        limited = await _limit_error(session, tenant_id, new_network=False)
        if limited:
            return limited
        node = _new_node(network, name, NodeRole.PEER, start_deadline)
        session.add(node)
        try:
            await session.flush()
            operation = Operation(
                tenant_id=tenant_id,
                kind=OperationKind.NODE_ADD,
                network_id=network.id,
                node_id=node.id,
            )
            session.add_all([operation, _first_change(node)])
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return _failed("name", "that name was just taken by another request",
                           ErrorCode.NAME_TAKEN)  # fmt: skip
        return Result(node=NodeView.of(node, network), operation=OperationView.of(operation))


async def delete_node(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, node_id: str
) -> Result:
    async with sessions() as session, session.begin():
        node = await session.get(Node, node_id)
        network = await session.get(Network, node.network_id) if node else None
        # Another tenant's node is indistinguishable from one that does not exist.
        if node is None or network is None or network.tenant_id != tenant_id:
            return _failed("id", "no such node", ErrorCode.NOT_FOUND)
        if node.role is NodeRole.COORDINATOR:
            return _failed("id", "a network's coordinator goes with its network: delete the "
                           "network instead", ErrorCode.COORDINATOR)  # fmt: skip
        if node.desired is Desired.ABSENT or network.desired is Desired.ABSENT:
            return _failed("id", "this node is already being deleted", ErrorCode.BEING_DELETED)
        node.desired = Desired.ABSENT
        operation = Operation(
            tenant_id=network.tenant_id,
            kind=OperationKind.NODE_DELETE,
            network_id=network.id,
            node_id=node.id,
        )
        session.add(operation)
        await session.flush()
        return Result(node=NodeView.of(node, network), operation=OperationView.of(operation))


async def delete_network(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, network_id: str
) -> Result:
    async with sessions() as session, session.begin():
        network = await session.get(Network, network_id)
        if network is None or network.tenant_id != tenant_id:
            return _failed("id", "no such network", ErrorCode.NOT_FOUND)
        if network.desired is Desired.ABSENT:
            return _failed("id", f'network "{network.name}" is already being deleted',
                           ErrorCode.BEING_DELETED)  # fmt: skip
        network.desired = Desired.ABSENT
        nodes = list(await session.scalars(select(Node).where(Node.network_id == network_id)))
        for node in nodes:
            node.desired = Desired.ABSENT
        operation = Operation(
            tenant_id=network.tenant_id, kind=OperationKind.NETWORK_DELETE, network_id=network.id
        )
        session.add(operation)
        await session.flush()
        return Result(
            network=NetworkView.of(network, [n.status for n in nodes]),
            operation=OperationView.of(operation),
        )
