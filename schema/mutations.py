"""Mutation root. Each takes one ``input`` and returns a payload with the object, the operation
it started and ``userErrors``; none of them waits for Kubernetes."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from strawberry.types import Info

from app.domain.enums import Consensus
from app.domain.errors import ErrorCode
from app.domain.storage import Storage
from app.events.bus import EventBus, NetworkChange, NodeChange
from app.services import networks, nodes
from app.services.results import Result, commit_unless_refused, refused
from app.store import node_feed
from app.store.read_models import NetworkView
from app.store.unit import UnitOfWork
from schema.auth import Need, caller
from schema.context import Context
from schema.ids import raw_id_of
from schema.types import ConsensusEnum, Network, Node, Operation, UserError


@strawberry.input(description="Each node's data claim; what is left out comes from the "
                  "installation's settings.")  # fmt: skip
class NetworkStorageInput:
    size: str | None = strawberry.field(
        default=None, description="A Kubernetes quantity such as 1Gi or 500Mi."
    )
    storage_class: str | None = strawberry.field(
        default=None, description='A StorageClass name; "" for the cluster\'s default class.'
    )


@strawberry.input
class NetworkCreateInput:
    name: str = strawberry.field(description="An RFC 1035 label, e.g. acme-test.")
    consensus: ConsensusEnum = Consensus.RAFT  # type: ignore[valid-type]
    storage: NetworkStorageInput | None = None


@strawberry.input
class NodeAddInput:
    network_id: strawberry.ID
    name: str = strawberry.field(description="An RFC 1035 label, unique in its network.")


@strawberry.input
class NetworkJoinInput:
    name: str = strawberry.field(description="Our name for the network being joined.")
    coordinator_ip: str = strawberry.field(
        description="The remote coordinator's IPv4 address; not inside this cluster's own "
        "Service or pod ranges unless the administrator allows it."
    )
    consensus: ConsensusEnum = Consensus.RAFT  # type: ignore[valid-type]
    node_name: str = strawberry.field(default="peer", description="Name of our joining node.")


@strawberry.input
class NodeDeleteInput:
    id: strawberry.ID
    force: bool = strawberry.field(
        default=False,
        description="Remove the node's objects even if the raft leader has not removed its "
        "raft ID (no raft step, or after a failed one).",
    )


@strawberry.input
class NetworkDeleteInput:
    id: strawberry.ID


@strawberry.type
class NetworkCreatePayload:
    network: Network | None
    operation: Operation | None
    user_errors: list[UserError]


@strawberry.type
class NodePayload:
    node: Node | None
    operation: Operation | None
    user_errors: list[UserError]


@strawberry.type
class NetworkJoinPayload:
    node: Node | None
    network: Network | None
    operation: Operation | None
    user_errors: list[UserError]


@strawberry.type
class DeletePayload:
    operation: Operation | None
    user_errors: list[UserError]


PayloadT = TypeVar("PayloadT", NetworkCreatePayload, NodePayload, NetworkJoinPayload, DeletePayload)


def _payload(kind: type[PayloadT], result: Result) -> PayloadT:
    """A payload of ``kind`` from a service's result: each payload shows the objects it has
    fields for (network, node, operation) and the refusals as ``userErrors``."""
    parts: dict[str, Any] = {
        "network": Network.of(result.network) if result.network else None,
        "node": Node.of(result.node) if result.node else None,
        "operation": Operation.of(result.operation) if result.operation else None,
        "user_errors": UserError.list_of(result.errors),
    }
    wanted = {field.name for field in dataclasses.fields(kind)}
    return kind(**{name: value for name, value in parts.items() if name in wanted})


def _bad_id(kind: str, field: str = "id") -> Result:
    return refused(field, f"not a {kind} ID", ErrorCode.INVALID_ID)


async def _change(
    info: Info[Context, None],
    kind: type[PayloadT],
    change: Callable[[UnitOfWork, str, float], Awaitable[Result]],
) -> PayloadT:
    """Run ``change(work, tenant_id, start_deadline)`` for a caller who may write."""
    principal = caller(info, Need.WRITE)
    deadline = info.context.deps.settings.node_start_deadline
    return _payload(
        kind, await _run(info, lambda work: change(work, principal.tenant_id, deadline))
    )


async def _run(
    info: Info[Context, None], change: Callable[[UnitOfWork], Awaitable[Result]]
) -> Result:
    """Run one service in its own unit of work: committed unless it refused, and then the
    network and node it made or changed are published (``networkChanged`` tells of a network
    created or marked for deletion and of a node added at once) and the reconciler is woken
    to converge the cluster. The network's change is also announced to the other replicas
    inside the transaction (on PostgreSQL: a NOTIFY delivered with the commit, in commit order
    with the node writes that follow, and never for a refusal that is rolled back)."""
    deps = info.context.deps
    result = await commit_unless_refused(deps.sessions, announced(deps.bus, change))
    if not result.errors:
        _publish(deps.bus, result)
        deps.kick(_network_of(result))
    return result


def _network_of(result: Result) -> str | None:
    """The network a change was to (its pass can cover that network only), or None."""
    if result.network is not None:
        return result.network.id
    return result.node.network_id if result.node is not None else None


def announced(
    bus: EventBus, change: Callable[[UnitOfWork], Awaitable[Result]]
) -> Callable[[UnitOfWork], Awaitable[Result]]:
    """``change``, then (unless it refused) its network's change announced to the other
    replicas in the same unit of work."""

    async def change_and_announce(work: UnitOfWork) -> Result:
        result = await change(work)
        if not result.errors and result.network is not None:
            note = bus.announcement(_network_change(result.network))
            if note is not None:
                await node_feed.announce(work.session, *note)
        return result

    return change_and_announce


def _publish(bus: EventBus, result: Result) -> None:
    if result.network is not None:
        bus.publish(_network_change(result.network))
    if result.node is not None:
        node = result.node
        bus.publish(NodeChange(node.id, node.network_id, node.tenant_id, node))


def _network_change(network: NetworkView) -> NetworkChange:
    return NetworkChange(network.id, network.tenant_id, network)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a network and its coordinator node.")
    async def network_create(
        self, info: Info[Context, None], input: NetworkCreateInput
    ) -> NetworkCreatePayload:
        settings = info.context.deps.settings
        wanted = input.storage or NetworkStorageInput()
        storage = Storage(
            settings.node_storage_size if wanted.size is None else wanted.size,
            settings.node_storage_class if wanted.storage_class is None else wanted.storage_class,
        )
        return await _change(info, NetworkCreatePayload, lambda work, tenant, deadline: (
            networks.create_network(work, tenant, input.name, input.consensus, deadline,
                                    storage, settings.node_storage_max_size)
        ))  # fmt: skip

    @strawberry.mutation(description="Add a dynamic peer to a network QaaS runs.")
    async def node_add(self, info: Info[Context, None], input: NodeAddInput) -> NodePayload:
        network_id = raw_id_of(input.network_id, "Network")
        if network_id is None:
            caller(info, Need.WRITE)
            return _payload(NodePayload, _bad_id("Network", "networkId"))
        return await _change(info, NodePayload, lambda work, tenant, deadline: (
            nodes.add_node(work, tenant, network_id, input.name, deadline)
        ))  # fmt: skip

    @strawberry.mutation(description="Run a dynamic peer that joins a network running elsewhere.")
    async def network_join(
        self, info: Info[Context, None], input: NetworkJoinInput
    ) -> NetworkJoinPayload:
        settings = info.context.deps.settings
        storage = Storage(settings.node_storage_size, settings.node_storage_class)
        return await _change(info, NetworkJoinPayload, lambda work, tenant, deadline: (
            networks.join_network(work, tenant, input.name, input.coordinator_ip,
                                  input.consensus, deadline, input.node_name, storage,
                                  networks.refused_join_ranges(settings))
        ))  # fmt: skip

    @strawberry.mutation(
        description="Delete a peer node and its Kubernetes objects; a raft member is first "
        "removed from raft by the raft leader (raft_removePeer), unless force is true."
    )
    async def node_delete(self, info: Info[Context, None], input: NodeDeleteInput) -> DeletePayload:
        return await _delete(info, input.id, "Node", lambda work, tenant, node: (
            nodes.delete_node(work, tenant, node, input.force)))  # fmt: skip

    @strawberry.mutation(description="Delete a network, all of its nodes and all their objects.")
    async def network_delete(
        self, info: Info[Context, None], input: NetworkDeleteInput
    ) -> DeletePayload:
        return await _delete(info, input.id, "Network", networks.delete_network)


async def _delete(
    info: Info[Context, None],
    global_id: strawberry.ID,
    kind: str,
    delete: Callable[[UnitOfWork, str, str], Awaitable[Result]],
) -> DeletePayload:
    principal = caller(info, Need.WRITE)
    raw = raw_id_of(global_id, kind)
    if raw is None:
        return _payload(DeletePayload, _bad_id(kind))
    result = await _run(info, lambda work: delete(work, principal.tenant_id, raw))
    return _payload(DeletePayload, result)
