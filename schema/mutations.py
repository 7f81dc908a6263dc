"""Mutation root. Each takes one ``input`` and returns a payload with the object, the operation
it started and ``userErrors``; none of them waits for Kubernetes."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from app import commands
from app.commands import ErrorCode, Result
from app.domain.enums import Consensus
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


def _user_errors(result: Result) -> list[UserError]:
    return [UserError(field=list(e.field), message=e.message, code=e.code) for e in result.errors]


def _operation(result: Result) -> Operation | None:
    return Operation.of(result.operation) if result.operation else None


def _bad_id(kind: str, field: str = "id") -> list[UserError]:
    return [
        UserError(field=["input", field], message=f"not a {kind} ID", code=ErrorCode.INVALID_ID)
    ]


def _done(info: Info[Context, None], result: Result) -> None:
    if not result.errors:
        info.context.runtime.kick()  # the reconciler takes it from here


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a network and its coordinator node.")
    async def network_create(
        self, info: Info[Context, None], input: NetworkCreateInput
    ) -> NetworkCreatePayload:
        principal, runtime = caller(info, Need.WRITE), info.context.runtime
        result = await commands.create_network(
            runtime.sessions, principal.tenant_id, input.name.strip(), input.consensus,
            runtime.settings.node_start_deadline,
        )  # fmt: skip
        _done(info, result)
        return NetworkCreatePayload(
            network=Network.of(result.network) if result.network else None,
            operation=_operation(result),
            user_errors=_user_errors(result),
        )

    @strawberry.mutation(description="Add a dynamic peer to a network QaaS runs.")
    async def node_add(self, info: Info[Context, None], input: NodeAddInput) -> NodePayload:
        principal, runtime = caller(info, Need.WRITE), info.context.runtime
        network_id = raw_id_of(input.network_id, "Network")
        if network_id is None:
            return NodePayload(
                node=None, operation=None, user_errors=_bad_id("Network", "networkId")
            )
        result = await commands.add_node(
            runtime.sessions, principal.tenant_id, network_id, input.name.strip(),
            runtime.settings.node_start_deadline,
        )  # fmt: skip
        _done(info, result)
        return NodePayload(
            node=Node.of(result.node) if result.node else None,
            operation=_operation(result),
            user_errors=_user_errors(result),
        )

    @strawberry.mutation(description="Run a dynamic peer that joins a network running elsewhere.")
    async def network_join(
        self, info: Info[Context, None], input: NetworkJoinInput
    ) -> NetworkJoinPayload:
        principal, runtime = caller(info, Need.WRITE), info.context.runtime
        result = await commands.join_network(
            runtime.sessions, principal.tenant_id, input.name.strip(), input.coordinator_ip,
            input.consensus, input.node_name.strip(), runtime.settings.node_start_deadline,
        )  # fmt: skip
        _done(info, result)
        return NetworkJoinPayload(
            node=Node.of(result.node) if result.node else None,
            network=Network.of(result.network) if result.network else None,
            operation=_operation(result),
            user_errors=_user_errors(result),
        )

    @strawberry.mutation(description="Delete a peer node and its Kubernetes objects.")
    async def node_delete(self, info: Info[Context, None], input: NodeDeleteInput) -> DeletePayload:
        principal = caller(info, Need.WRITE)
        node_id = raw_id_of(input.id, "Node")
        if node_id is None:
            return DeletePayload(operation=None, user_errors=_bad_id("Node"))
        result = await commands.delete_node(
            info.context.runtime.sessions, principal.tenant_id, node_id
        )
        _done(info, result)
        return DeletePayload(operation=_operation(result), user_errors=_user_errors(result))

    @strawberry.mutation(description="Delete a network, all of its nodes and all their objects.")
    async def network_delete(
        self, info: Info[Context, None], input: NetworkDeleteInput
    ) -> DeletePayload:
        principal = caller(info, Need.WRITE)
        network_id = raw_id_of(input.id, "Network")
        if network_id is None:
            return DeletePayload(operation=None, user_errors=_bad_id("Network"))
        result = await commands.delete_network(
            info.context.runtime.sessions, principal.tenant_id, network_id
        )
        _done(info, result)
        return DeletePayload(operation=_operation(result), user_errors=_user_errors(result))
