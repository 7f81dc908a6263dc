"""Query root: node(id), networks (filtered, ordered, paged either way), network(id or name),
operation(id), operations (newest first)."""

from __future__ import annotations

import enum
from typing import Any

import strawberry
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from app.domain.enums import NetworkStatus, OperationState
from app.domain.names import name_problem
from app.store import node_pages, operations, reads
from app.store.pages import BadCursor, Page, Sort
from schema.auth import caller
from schema.context import Context, NodePages
from schema.errors import ClientError
from schema.ids import from_global_id, raw_id_of
from schema.pagination import MAX_PAGE, PageInfo, window
from schema.types import (
    Entity,
    Network,
    NetworkConnection,
    NetworkEdge,
    NetworkStatusEnum,
    Node,
    Operation,
    OperationStateEnum,
)


@strawberry.enum(description="The order of `networks`.")
class NetworkOrder(enum.Enum):
    CREATED_ASC = "CREATED_ASC"
    CREATED_DESC = "CREATED_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"


SORTS = {
    NetworkOrder.CREATED_ASC: Sort(),
    NetworkOrder.CREATED_DESC: Sort(descending=True),
    NetworkOrder.NAME_ASC: Sort(by_name=True),
    NetworkOrder.NAME_DESC: Sort(by_name=True, descending=True),
}


@strawberry.input(description="Which networks `networks` lists; every given part must match.")
class NetworkFilter:
    status: NetworkStatusEnum | None = None  # type: ignore[valid-type]
    name_contains: str | None = strawberry.field(
        default=None, description="A part of the name (case-sensitive: names are lower case)."
    )


@strawberry.type
class OperationEdge:
    cursor: str
    node: Operation


@strawberry.type
class OperationConnection:
    edges: list[OperationEdge]
    page_info: PageInfo
    total_count: int


def _page_info(page: Page[Any]) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=page.cursors[0] if page.cursors else None,
        end_cursor=page.end_cursor,
    )


async def lookup(info: Info[Context, None], global_id: str) -> Entity | None:
    """Any object of the caller's tenant by its global ID; None for an unknown or malformed ID."""
    caller(info)
    parsed = from_global_id(global_id)
    if parsed is None:
        return None
    type_name, raw = parsed
    loaders = info.context.loaders
    if type_name == "Network":
        network = await loaders.network.load(raw)
        return Network.of(network) if network else None
    if type_name == "Node":
        node = await loaders.node.load(raw)
        return Node.of(node) if node else None
    if type_name == "Operation":
        operation = await loaders.operation.load(raw)
        return Operation.of(operation) if operation else None
    return None


def _first_node_pages(info: Info[Context, None]) -> set[int]:
    """The sizes of the first pages of nodes (`nodes` without `after`) the selection asks of
    each listed network (edges.node.nodes, fragments included); a size out of bounds is left
    to the resolver, which refuses it."""
    sizes: set[int] = set()

    def under(selections: list[Selection], path: tuple[str, ...]) -> None:
        for selection in selections:
            if not isinstance(selection, SelectedField):  # a fragment: look inside
                under(selection.selections, path)
            elif path and selection.name == path[0]:
                under(selection.selections, path[1:])
            elif not path and selection.name == "nodes":
                first = selection.arguments.get("first", 20)
                if isinstance(first, str) and first.isdigit():  # a literal comes as its text
                    first = int(first)
                wanted = isinstance(first, int) and 1 <= first <= MAX_PAGE
                if wanted and selection.arguments.get("after") is None:
                    sizes.add(first)

    for field in info.selected_fields:
        under(field.selections, ("edges", "node"))
    return sizes


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global ID.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Entity | None:
        return await lookup(info, id)

    @strawberry.field(
        description="Networks, oldest first unless `orderBy` says otherwise: `first` (default "
        "20) after `after`, or `last` before `before`."
    )
    async def networks(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: NetworkFilter | None = None,
        order_by: NetworkOrder = NetworkOrder.CREATED_ASC,
    ) -> NetworkConnection:
        principal = caller(info)
        wanted = window(first, after, last, before)
        pages: NodePages = {}
        filter = filter or NetworkFilter()
        status: NetworkStatus | None = filter.status
        sizes = _first_node_pages(info)  # their nodes are read with the networks' statuses
        nodes: node_pages.NodeRows | None = {} if sizes else None
        try:
            async with info.context.deps.sessions() as session:
                page = await reads.networks_page(
                    session, principal.tenant_id, wanted.size, wanted.cursor,
                    sort=SORTS[order_by], backward=wanted.backward,
                    name_contains=filter.name_contains, status=status, nodes=nodes,
                )  # fmt: skip
        except BadCursor as error:
            raise ClientError(str(error)) from None
        ids = [view.id for view in page.items]
        for size in sizes:
            found = node_pages.first_pages(nodes or {}, ids, size)
            pages.update(((i, size, None), p) for i, p in found.items())
        return NetworkConnection(
            edges=[
                NetworkEdge(cursor=cursor, node=Network.of(view, pages=pages))
                for view, cursor in zip(page.items, page.cursors, strict=True)
            ],
            page_info=_page_info(page),
            total_count=page.total,
        )

    @strawberry.field(
        description="The operations mutations started, newest first: `first` (default 20) "
        "after `after`, or `last` before `before`; only one network's, or in one state."
    )
    async def operations(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        network_id: strawberry.ID | None = None,
        state: OperationStateEnum | None = None,  # type: ignore[valid-type]
    ) -> OperationConnection:
        principal = caller(info)
        wanted = window(first, after, last, before)
        network_raw = raw_id_of(network_id, "Network") if network_id is not None else None
        if network_id is not None and network_raw is None:
            raise ClientError("`networkId` is not a Network ID")
        chosen: OperationState | None = state
        try:
            async with info.context.deps.sessions() as session:
                page = await operations.page(
                    session, principal.tenant_id, wanted.size, wanted.cursor,
                    backward=wanted.backward, network_id=network_raw, state=chosen,
                )  # fmt: skip
        except BadCursor as error:
            raise ClientError(str(error)) from None
        return OperationConnection(
            edges=[
                OperationEdge(cursor=cursor, node=Operation.of(view))
                for view, cursor in zip(page.items, page.cursors, strict=True)
            ],
            page_info=_page_info(page),
            total_count=page.total,
        )

    @strawberry.field(description="One network, by global ID or by name.")
    async def network(
        self, info: Info[Context, None], id: strawberry.ID | None = None, name: str | None = None
    ) -> Network | None:
        principal = caller(info)
        if (id is None) == (name is None):
            raise ClientError("give exactly one of `id` and `name`")
        if id is not None:
            raw = raw_id_of(id, "Network")
            view = await info.context.loaders.network.load(raw) if raw else None
        elif name_problem(str(name)) is not None:
            view = None  # no network has a name that is not a valid one
        else:
            async with info.context.deps.sessions() as session:
                view = await reads.network_by_name(session, principal.tenant_id, str(name))
        return Network.of(view) if view else None

    @strawberry.field(description="An operation a mutation started, by global ID.")
    async def operation(self, info: Info[Context, None], id: strawberry.ID) -> Operation | None:
        caller(info)
        raw = raw_id_of(id, "Operation")
        view = await info.context.loaders.operation.load(raw) if raw else None
        return Operation.of(view) if view else None
