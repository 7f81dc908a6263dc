"""Query root: node(id), networks, network(id or name), operation(id)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from app.domain.names import name_problem
from app.store import reads
from app.store.pages import BadCursor
from schema.auth import caller
from schema.context import Context, NodePages
from schema.errors import ClientError
from schema.ids import from_global_id, raw_id_of
from schema.pagination import MAX_PAGE, PageInfo, page_args
from schema.types import Entity, Network, NetworkConnection, NetworkEdge, Node, Operation


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

    @strawberry.field(description="Networks, oldest first.")
    async def networks(
        self, info: Info[Context, None], first: int = 20, after: str | None = None
    ) -> NetworkConnection:
        principal = caller(info)
        limit = page_args(first)
        pages: NodePages = {}
        try:
            async with info.context.deps.sessions() as session:
                page = await reads.networks_page(session, principal.tenant_id, limit, after)
                ids = [view.id for view in page.items]
                for size in _first_node_pages(info) if ids else ():  # read here, in one go
                    found = await reads.first_node_pages(session, principal.tenant_id, ids, size)
                    pages.update(((i, size, None), p) for i, p in found.items())
        except BadCursor as error:
            raise ClientError(str(error)) from None
        return NetworkConnection(
            edges=[
                NetworkEdge(cursor=cursor, node=Network.of(view, pages=pages))
                for view, cursor in zip(page.items, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=after is not None,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.end_cursor,
            ),
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
