"""Mutation root. Each takes one ``input`` and returns a payload with the object, the operation
it started and ``userErrors``; none of them waits for Kubernetes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry
from strawberry.types import Info

from app.domain.enums import Consensus
from app.domain.errors import ErrorCode
from app.services import networks, nodes
from app.services.results import Result
from app.store.unit import UnitOfWork
from schema.auth import Need, caller
from schema.context import Context
from schema.ids import raw_id_of
from schema.types import ConsensusEnum, Network, Node, Operation, UserError


@strawberry.input
class NetworkCreateInput:
    name: str = strawberry.field(description="An RFC 1035 label, e.g. acme-test.")
    consensus: ConsensusEnum = Consensus.RAFT  # type: ignore[valid-type]


@strawberry.input
class NodeAddInput:
    network_id: strawberry.ID
    name: str = strawberry.field(description="An RFC 1035 label, unique in its network.")


@strawberry.input
class NetworkJoinInput:
    name: str = strawberry.field(description="Our name for the network being joined.")
    coordinator_ip: str = strawberry.field(description="The remote coordinator's IPv4 address.")
    consensus: ConsensusEnum = Consensus.RAFT  # type: ignore[valid-type]
    node_name: str = strawberry.field(default="peer", description="Name of our joining node.")


@strawberry.input
class NodeDeleteInput:
    id: strawberry.ID


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


def _operation(result: Result) -> Operation | None:
    return Operation.of(result.operation) if result.operation else None


def _bad_id(kind: str, field: str = "id") -> list[UserError]:
    return [
        UserError(field=["input", field], message=f"not a {kind} ID", code=ErrorCode.INVALID_ID)
    ]


def _deadline(info: Info[Context, None]) -> float:
    return info.context.deps.settings.node_start_deadline


async def _run(
    info: Info[Context, None], change: Callable[[UnitOfWork], Awaitable[Result]]
) -> Result:
    """Run one service in its own unit of work: committed unless it refused, and then the
    reconciler is woken to converge the cluster."""
    deps = info.context.deps
    async with deps.unit_of_work() as work:
        result = await change(work)
        if result.errors:
            work.discard()
    if not result.errors:
        deps.kick()
    return result


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a network and its coordinator node.")
    async def network_create(
        self, info: Info[Context, None], input: NetworkCreateInput
    ) -> NetworkCreatePayload:
        principal, deadline = caller(info, Need.WRITE), _deadline(info)
        result = await _run(info, lambda work: networks.create_network(
            work, principal.tenant_id, input.name, input.consensus, deadline,
        ))  # fmt: skip
        return NetworkCreatePayload(
            network=Network.of(result.network) if result.network else None,
            operation=_operation(result),
            user_errors=UserError.list_of(result.errors),
        )

    @strawberry.mutation(description="Add a dynamic peer to a network QaaS runs.")
    async def node_add(self, info: Info[Context, None], input: NodeAddInput) -> NodePayload:
        principal, deadline = caller(info, Need.WRITE), _deadline(info)
        network_id = raw_id_of(input.network_id, "Network")
        if network_id is None:
            return NodePayload(
                node=None, operation=None, user_errors=_bad_id("Network", "networkId")
            )
        result = await _run(info, lambda work: nodes.add_node(
            work, principal.tenant_id, network_id, input.name, deadline,
        ))  # fmt: skip
        return NodePayload(
            node=Node.of(result.node) if result.node else None,
            operation=_operation(result),
            user_errors=UserError.list_of(result.errors),
        )

    @strawberry.mutation(description="Run a dynamic peer that joins a network running elsewhere.")
    async def network_join(
        self, info: Info[Context, None], input: NetworkJoinInput
    ) -> NetworkJoinPayload:
        principal, deadline = caller(info, Need.WRITE), _deadline(info)
        result = await _run(info, lambda work: networks.join_network(
            work, principal.tenant_id, input.name, input.coordinator_ip, input.consensus,
            deadline, input.node_name,
        ))  # fmt: skip
        return NetworkJoinPayload(
            node=Node.of(result.node) if result.node else None,
            network=Network.of(result.network) if result.network else None,
            operation=_operation(result),
            user_errors=UserError.list_of(result.errors),
        )

    @strawberry.mutation(description="Delete a peer node and its Kubernetes objects.")
    async def node_delete(self, info: Info[Context, None], input: NodeDeleteInput) -> DeletePayload:
        principal = caller(info, Need.WRITE)
        node_id = raw_id_of(input.id, "Node")
        if node_id is None:
            return DeletePayload(operation=None, user_errors=_bad_id("Node"))
        result = await _run(
            info, lambda work: nodes.delete_node(work, principal.tenant_id, node_id)
        )
        return DeletePayload(
            operation=_operation(result), user_errors=UserError.list_of(result.errors)
        )

    @strawberry.mutation(description="Delete a network, all of its nodes and all their objects.")
    async def network_delete(
        self, info: Info[Context, None], input: NetworkDeleteInput
    ) -> DeletePayload:
        principal = caller(info, Need.WRITE)
        network_id = raw_id_of(input.id, "Network")
        if network_id is None:
            return DeletePayload(operation=None, user_errors=_bad_id("Network"))
        result = await _run(
            info, lambda work: networks.delete_network(work, principal.tenant_id, network_id)
        )
        return DeletePayload(
            operation=_operation(result), user_errors=UserError.list_of(result.errors)
        )
