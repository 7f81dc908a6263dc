"""Network mutations: create, join, delete. Validate, write the desired state, return at once.

None of these waits for Kubernetes: the reconciler converges the cluster afterwards. A caller's
mistake comes back as a ``UserError`` (field, message, code), never as an exception. They write
through the caller's unit of work and never commit: the caller does, or discards on refusals.

Example::

    async with UnitOfWork.begin(sessions) as work:
        result = await create_network(work, tenant_id, "acme", Consensus.RAFT, 300.0)
        if result.errors:
            work.discard()
"""

from __future__ import annotations

from collections.abc import Sequence

from app.config import Settings
from app.domain.addresses import (
    AddressRange,
    address_ranges,
    cluster_address_problem,
    dialable_ip_problem,
)
from app.domain.enums import Consensus, Desired, NodeRole, OperationKind
from app.domain.errors import ErrorCode, UserError
from app.domain.names import (
    COORDINATOR_NAME,
    DEFAULT_JOIN_NODE_NAME,
    network_name_problem,
    node_name_problem,
    tidy,
)
from app.domain.storage import Storage
from app.services.nodes import (
    limit_refusal,
    network_refusal,
    object_name_refusal,
    record_new_node,
)
from app.services.results import Result, name_refusal, refused
from app.store import desired, operations
from app.store.models import Network, Operation
from app.store.read_models import NetworkView, OperationView
from app.store.unit import UnitOfWork


async def create_network(
    work: UnitOfWork,
    tenant_id: str,
    name: str,
    consensus: Consensus,
    start_deadline: float,
    storage: Storage | None = None,
    max_size: str = "100Gi",
) -> Result:
    """``storage`` None leaves the network on the installation's settings."""
    name = tidy(name)
    errors = name_refusal("name", name, network_name_problem(name, joined=False))
    if storage is not None:
        storage = Storage(tidy(storage.size), tidy(storage.storage_class))
        errors += [
            UserError(("input", "storage", field), f"{field} {problem}", ErrorCode.INVALID_INPUT)
            for field, problem in storage.problems(max_size)
        ]
    if errors:
        return Result(errors=errors)
    network = Network(tenant_id=tenant_id, name=name, consensus=consensus)
    if storage is not None:
        network.storage_size, network.storage_class = storage.size, storage.storage_class
    return await _open_network(
        work, network, COORDINATOR_NAME, NodeRole.COORDINATOR, OperationKind.NETWORK_CREATE,
        start_deadline,
    )  # fmt: skip


async def join_network(
    work: UnitOfWork,
    tenant_id: str,
    name: str,
    coordinator_ip: str,
    consensus: Consensus,
    start_deadline: float,
    node_name: str = DEFAULT_JOIN_NODE_NAME,
    storage: Storage | None = None,
    refused_ranges: Sequence[AddressRange] = (),
) -> Result:
    """``refused_ranges``: where the coordinator may not be (``refused_join_ranges``)."""
    name, node_name, coordinator_ip = tidy(name), tidy(node_name), tidy(coordinator_ip)
    errors = name_refusal("name", name, network_name_problem(name, joined=True))
    if not errors:
        errors = name_refusal("nodeName", node_name, node_name_problem(name, node_name))
    if problem := dialable_ip_problem(coordinator_ip):
        errors.append(UserError(("input", "coordinatorIp"), problem, ErrorCode.INVALID_IP))
    elif problem := cluster_address_problem(coordinator_ip, refused_ranges):
        errors.append(UserError(("input", "coordinatorIp"), problem, ErrorCode.CLUSTER_ADDRESS))
    if errors:
        return Result(errors=errors)
    network = Network(
        tenant_id=tenant_id, name=name, consensus=consensus, external_coordinator_ip=coordinator_ip
    )
    if storage is not None:  # the settings' defaults, fixed when the network is made
        network.storage_size, network.storage_class = storage.size, storage.storage_class
    return await _open_network(
        work, network, node_name, NodeRole.PEER, OperationKind.NETWORK_JOIN, start_deadline
    )


def refused_join_ranges(settings: Settings) -> tuple[AddressRange, ...]:
    """The cluster's own Service and pod ranges, unless the administrator allows joining a
    coordinator there (``QAAS_JOIN_ALLOW_CLUSTER_ADDRESSES``)."""
    if settings.join_allow_cluster_addresses:
        return ()
    return address_ranges(settings.cluster_cidrs)


async def _open_network(
    work: UnitOfWork,
    network: Network,
    node_name: str,
    role: NodeRole,
    kind: OperationKind,
    start_deadline: float,
) -> Result:
    """Record a new network and its first node, unless the name is taken or the tenant full."""
    session = work.session
    # One statement locks the tenant, counts the new rows in and looks the name up; a refusal
    # rolls it back (the caller discards).
    room = await desired.claim(session, network.tenant_id, networks=1, nodes=1,
                               name=network.name)  # fmt: skip
    if room is not None and room.named is Desired.ABSENT:
        return refused("name", f'network "{network.name}" is being deleted; try again when it '
                       "is gone", ErrorCode.BEING_DELETED)  # fmt: skip
    if room is not None and room.named is not None:
        return refused("name", f'a network named "{network.name}" already exists',
                       ErrorCode.NAME_TAKEN)  # fmt: skip
    field = "name" if role is NodeRole.COORDINATOR else "nodeName"
    if taken := await object_name_refusal(session, network.tenant_id, network.name, node_name,
                                          field, new=True):  # fmt: skip
        return taken
    if limited := limit_refusal(room, new_network=True):
        return limited
    return await record_new_node(session, network, node_name, role, kind, start_deadline)


async def delete_network(work: UnitOfWork, tenant_id: str, network_id: str) -> Result:
    session = work.session
    network = await desired.network_of_tenant(session, tenant_id, network_id)
    if refusal := network_refusal(network, "id", 'network "{name}" is already being deleted'):
        return refusal
    assert network is not None
    network.desired = Desired.ABSENT
    nodes = await desired.nodes_of(session, network_id)
    for node in nodes:
        node.desired = Desired.ABSENT
    operation = await operations.add(
        session,
        Operation(tenant_id=tenant_id, kind=OperationKind.NETWORK_DELETE, network_id=network.id),
    )
    return Result(
        network=NetworkView.of(network, [n.status for n in nodes]),
        operation=OperationView.of(operation),
    )
