"""GraphQL object types: networks, nodes, operations, connections, user errors.

The Relay "Node" interface is called ``Entity`` here: ``Node`` is the Quorum node, a name the
API contract fixes. ``node(id)`` still looks any ``Entity`` up by its global ID.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.domain import errors
from app.domain.enums import (
    Consensus,
    NetworkStatus,
    NodeRole,
    NodeStatus,
    OperationKind,
    OperationState,
)
from app.domain.errors import ErrorCode
from app.services import logs
from app.store import reads
from app.store.read_models import NetworkView, NodeView, OperationView, StatusChangeView
from schema.auth import caller
from schema.context import Context, Loaders, NodePageKey, NodePages
from schema.errors import ClientError, ClusterFailure
from schema.ids import to_global_id
from schema.pagination import PageInfo, page_args

MAX_HISTORY = 100  # Node.statusHistory(last:)

ConsensusEnum = strawberry.enum(
    Consensus, name="Consensus", description="RAFT or IBFT (QNM's istanbul)"
)
NodeRoleEnum = strawberry.enum(NodeRole, name="NodeRole")
NodeStatusEnum = strawberry.enum(NodeStatus, name="NodeStatus")
NetworkStatusEnum = strawberry.enum(NetworkStatus, name="NetworkStatus")
OperationKindEnum = strawberry.enum(OperationKind, name="OperationKind")
OperationStateEnum = strawberry.enum(OperationState, name="OperationState")
UserErrorCodeEnum = strawberry.enum(ErrorCode, name="UserErrorCode")


@strawberry.interface(description="An object with a global ID (Relay's Node interface).")
class Entity:
    id: strawberry.ID


@strawberry.type(description="A Quorum network: a coordinator and its dynamic peers.")
class Network(Entity):
    view: strawberry.Private[NetworkView]
    loaders: strawberry.Private[Loaders | None]  # a subscription event's own (see Node)
    pages: strawberry.Private[NodePages | None]  # its node pages, if read with it

    name: str
    consensus: ConsensusEnum  # type: ignore[valid-type]
    status: NetworkStatusEnum  # type: ignore[valid-type]
    created_at: datetime.datetime
    external: bool = strawberry.field(
        description="True for a network that runs elsewhere, joined through networkJoin."
    )

    @classmethod
    def of(
        cls, view: NetworkView, loaders: Loaders | None = None, pages: NodePages | None = None
    ) -> Network:
        return cls(
            id=strawberry.ID(to_global_id("Network", view.id)),
            view=view,
            loaders=loaders,
            pages=pages,
            name=view.name,
            consensus=view.consensus,
            status=view.status,
            created_at=view.created_at,
            external=view.external_coordinator_ip is not None,
        )

    @strawberry.field(description="The address peers dial: the coordinator's ClusterIP, or the "
                      "external coordinator's IP for a joined network.")  # fmt: skip
    def coordinator_ip(self, info: Info[Context, None]) -> str | None:
        # Synchronous when the IP was read with the network (reads.network_views): a list of
        # networks then awaits nothing for it. Otherwise an awaitable, which graphql-core awaits.
        view = self.view
        if view.external_coordinator_ip:
            return view.external_coordinator_ip
        if view.coordinator_known:
            return view.coordinator_ip
        return self._coordinator_ip(info)  # type: ignore[return-value]

    async def _coordinator_ip(self, info: Info[Context, None]) -> str | None:
        coordinator = await (self.loaders or info.context.loaders).coordinator.load(self.view.id)
        return coordinator.service_ip if coordinator else None

    @strawberry.field(description="What each node's data claim asks for.")
    def storage(self, info: Info[Context, None]) -> NetworkStorage:
        settings = info.context.deps.settings
        size = self.view.storage_size or settings.node_storage_size
        chosen = self.view.storage_class
        storage_class = settings.node_storage_class if chosen is None else chosen
        return NetworkStorage(size=size, storage_class=storage_class or None)

    @strawberry.field
    def nodes(
        self,
        info: Info[Context, None],
        first: Annotated[int, strawberry.argument(description="1 to 100")] = 20,
        after: str | None = None,
    ) -> NodeConnection:
        # Synchronous when the list read this page with the networks (Query.networks): a list
        # of networks then awaits nothing for their nodes. Otherwise the page is loaded: a
        # resolver may return an awaitable, which graphql-core awaits.
        limit = page_args(first)
        key = (self.view.id, limit, after)
        page = self.pages.get(key) if self.pages else None
        if page is not None:
            return self._connection(page, after)
        return self._load_nodes(info, key)  # type: ignore[return-value]

    async def _load_nodes(self, info: Info[Context, None], key: NodePageKey) -> NodeConnection:
        try:  # batched with the other networks' pages (Loaders.node_page)
            page = await (self.loaders or info.context.loaders).node_page.load(key)
        except reads.BadCursor as error:
            raise ClientError(str(error)) from None
        return self._connection(page, key[2])

    @staticmethod
    def _connection(page: reads.Page[NodeView], after: str | None) -> NodeConnection:
        pairs = zip(page.items, page.cursors, strict=True)
        return NodeConnection(
            edges=[NodeEdge(cursor=c, node=Node.of(v)) for v, c in pairs],
            page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor,
                               has_previous_page=after is not None,
                               start_cursor=page.cursors[0] if page.cursors else None),
            total_count=page.total,
        )  # fmt: skip


@strawberry.type(description="A node's data claim: its Blockchain/ and Constellation/ (keys, "
                 "enode, chain) survive the pod.")  # fmt: skip
class NetworkStorage:
    size: str = strawberry.field(description="A Kubernetes quantity, e.g. 1Gi.")
    storage_class: str | None = strawberry.field(
        description="The StorageClass; null: the cluster's default class."
    )


@strawberry.type(description="What the pod running a node reports.")
class PodState:
    name: str | None
    phase: str | None
    ready: bool
    ip: str | None
    restart_count: int
    reason: str | None = strawberry.field(
        description="Why the container waits or ended: ContainerCreating, ErrImagePull, "
        "ImagePullBackOff, CrashLoopBackOff, Error, ..."
    )
    message: str | None
    started_at: datetime.datetime | None


@strawberry.type(
    description="What the chain probe last saw of the node (JSON-RPC to its pod). "
    "A field is null when the node does not say (e.g. raft fields under IBFT)."
)
class ChainState:
    block_number: int | None
    peer_count: int | None
    syncing: bool | None
    enode: str | None
    client_version: str | None
    raft_role: str | None = strawberry.field(description="minter, verifier or learner")
    raft_id: int | None
    validators: list[str] | None = strawberry.field(description="IBFT validators")
    probed_at: datetime.datetime | None
    error: str | None = strawberry.field(
        description="Why the last probe got no answer (the other fields are from the last "
        "answer, if any)."
    )


@strawberry.type(description="One transition of a node's status.")
class StatusChange:
    status: NodeStatusEnum  # type: ignore[valid-type]
    reason: str | None
    at: datetime.datetime

    @classmethod
    def of(cls, view: StatusChangeView) -> StatusChange:
        return cls(status=view.status, reason=view.reason, at=view.at)


@strawberry.type(description="A Quorum node (QNM) running in the cluster.")
class Node(Entity):
    view: strawberry.Private[NodeView]
    loaders: strawberry.Private[Loaders | None]

    name: str
    role: NodeRoleEnum  # type: ignore[valid-type]
    status: NodeStatusEnum  # type: ignore[valid-type]
    status_reason: str | None = strawberry.field(
        description="Why, when the status is FAILED or UNHEALTHY; for a JOINING node, what it "
        "lacks (no peers, no raft membership, syncing); for a PENDING node, what it waits for "
        '("Unschedulable: ...", the scheduler\'s message); while QaaS retries a refused or '
        'failed Kubernetes API call for the node, that call\'s error ("Retrying: ...").'
    )
    status_changed_at: datetime.datetime
    ip: str | None = strawberry.field(
        description="The node's Service ClusterIP: the address it advertises to its peers."
    )
    object_name: str = strawberry.field(description="Name of its Service and Deployment.")
    created_at: datetime.datetime

    @classmethod
    def of(cls, view: NodeView, loaders: Loaders | None = None) -> Node:
        return cls(
            id=strawberry.ID(to_global_id("Node", view.id)),
            view=view,
            loaders=loaders,
            name=view.name,
            role=view.role,
            status=view.status,
            status_reason=view.status_reason,
            status_changed_at=view.status_changed_at,
            ip=view.service_ip,
            object_name=view.object_name,
            created_at=view.created_at,
        )

    def _loaders(self, info: Info[Context, None]) -> Loaders:
        return self.loaders or info.context.loaders

    @strawberry.field
    async def network(self, info: Info[Context, None]) -> Network | None:
        loaders = self._loaders(info)
        view = await loaders.network.load(self.view.network_id)
        return Network.of(view, loaders) if view else None

    @strawberry.field
    def pod(self) -> PodState | None:
        v = self.view
        if v.pod_name is None:
            return None
        return PodState(
            name=v.pod_name, phase=v.pod_phase, ready=v.pod_ready, ip=v.pod_ip,
            restart_count=v.restart_count, reason=v.pod_reason, message=v.pod_message,
            started_at=v.pod_started_at,
        )  # fmt: skip

    @strawberry.field(description="The chain as the probe saw it; null until the first probe.")
    def chain(self) -> ChainState | None:
        c = self.view.chain
        if c is None:
            return None
        return ChainState(
            block_number=c.block_number, peer_count=c.peer_count, syncing=c.syncing,
            enode=c.enode, client_version=c.client_version, raft_role=c.raft_role,
            raft_id=c.raft_id, validators=list(c.validators) if c.validators is not None else None,
            probed_at=c.probed_at, error=c.error,
        )  # fmt: skip

    @strawberry.field(
        description="The last `tail` lines (1 to 1000; at most 256 KiB) of the log of the node's "
        "current pod, oldest first: QNM's output and, with the QNM image's entrypoint, its "
        "gethNode.log, constellation.log and communicationNode.log, prefixed `[geth] `, "
        "`[constellation] `, `[comm] `. Empty when the node has no pod."
    )
    async def logs(self, info: Info[Context, None], tail: int = 100) -> list[str]:
        principal = caller(info)  # a Node is only ever built from its tenant's rows
        try:
            return await logs.node_logs(info.context.deps, principal.namespace, self.view, tail)
        except logs.TailOutOfRange as error:
            raise ClientError(str(error)) from None
        except logs.LogsUnavailable as error:
            raise ClusterFailure(str(error)) from None

    @strawberry.field(
        description=f"The last `last` status transitions (1 to {MAX_HISTORY}), oldest first. "
        f"Another `last` is an error; older transitions are not served."
    )
    async def status_history(self, info: Info[Context, None], last: int = 20) -> list[StatusChange]:
        if not 1 <= last <= MAX_HISTORY:
            raise ClientError(f"`last` must be between 1 and {MAX_HISTORY}, not {last}")
        changes = await self._loaders(info).history.load((self.view.id, last))
        return [StatusChange.of(c) for c in changes]


@strawberry.type(description="Work a mutation started; the reconciler carries it out.")
class Operation(Entity):
    view: strawberry.Private[OperationView]

    kind: OperationKindEnum  # type: ignore[valid-type]
    state: OperationStateEnum  # type: ignore[valid-type]
    message: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    finished_at: datetime.datetime | None

    @classmethod
    def of(cls, view: OperationView) -> Operation:
        return cls(
            id=strawberry.ID(to_global_id("Operation", view.id)),
            view=view,
            kind=view.kind,
            state=view.state,
            message=view.message,
            created_at=view.created_at,
            updated_at=view.updated_at,
            finished_at=view.finished_at,
        )

    @strawberry.field(description="Its network, while it exists.")
    async def network(self, info: Info[Context, None]) -> Network | None:
        if self.view.network_id is None:
            return None
        view = await info.context.loaders.network.load(self.view.network_id)
        return Network.of(view) if view else None

    @strawberry.field(description="Its node, while it exists.")
    async def node(self, info: Info[Context, None]) -> Node | None:
        if self.view.node_id is None:
            return None
        view = await info.context.loaders.node.load(self.view.node_id)
        return Node.of(view) if view else None


@strawberry.type
class NetworkEdge:
    cursor: str
    node: Network


@strawberry.type
class NetworkConnection:
    edges: list[NetworkEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class NodeEdge:
    cursor: str
    node: Node


@strawberry.type
class NodeConnection:
    edges: list[NodeEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="Something the caller got wrong, and where.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field, e.g. ["input", "name"].'
    )
    message: str
    code: UserErrorCodeEnum  # type: ignore[valid-type]

    @classmethod
    def list_of(cls, refusals: Iterable[errors.UserError]) -> list[UserError]:
        return [cls(field=list(e.field), message=e.message, code=e.code) for e in refusals]
