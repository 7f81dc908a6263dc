"""Read queries: where the GraphQL layer's data comes from, as read models, scoped to a tenant.

Every query that takes a ``tenant_id`` finds only that tenant's rows: another tenant's objects
behave as if they did not exist. Lists are keyset pages (see ``pages.py``).

Example::

    page = await networks_page(session, tenant_id, first=20, cursor=None)
    page.items, page.has_next, page.end_cursor
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Select, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import NetworkStatus, NodeRole, NodeStatus
from app.store.models import ApiToken, Network, Node, NodeStatusChange, Operation, Tenant
from app.store.node_pages import NodeRows, node_rows, status_of
from app.store.pages import (
    BadCursor,
    Page,
    Sort,
    after,
    cursor_of,
    decode_cursor,
    decode_name_cursor,
    encode_cursor,
    seek,
)
from app.store.plain import plain
from app.store.read_models import (
    NetworkView,
    NodeView,
    OperationView,
    StatusChangeView,
)

__all__ = ["BadCursor", "Page", "Sort"]

OLDEST_FIRST = Sort()


# Statements of every list, built once: building them (and their cache keys) per request cost
# more than running them (about 1 ms for the first node pages), and the ids are bound values.
_NODE_STATUSES = (
    select(Node.network_id, Node.status, Node.role, Node.service_ip)
    .where(Node.network_id.in_(bindparam("network_ids", expanding=True)))
    .order_by(Node.created_at, Node.id)
)


async def network_views(
    session: AsyncSession,
    networks: Sequence[Network | Row[*tuple[Any, ...]]],
    nodes: NodeRows | None = None,
) -> list[NetworkView]:
    """Views of ``networks``: their status and coordinator IP from one statement over their
    nodes' status, role and IP (plain rows: no ORM objects). With ``nodes`` (a dict to fill),
    that statement reads the nodes whole, into ``nodes``: a list that shows the networks' first
    node pages takes them from there (``first_pages``), one statement for both."""
    statuses: dict[str, list[NodeStatus]] = defaultdict(list)
    ips: dict[str, str | None] = {}  # the coordinator's, by network
    if networks:
        ids = [n.id for n in networks]
        found: Iterable[tuple[Any, ...]]
        if nodes is None:
            found = await plain(session, _NODE_STATUSES, {"network_ids": ids})
        else:
            nodes.update(await node_rows(session, networks[0].tenant_id, ids))
            found = (status_of(row) for network_id in ids for row in nodes.get(network_id, ()))
        # By position: a Row's attribute lookups cost more than the rest of this loop.
        for network_id, status, role, ip in found:
            statuses[network_id].append(status)
            if role is NodeRole.COORDINATOR:
                ips.setdefault(network_id, ip)
    return [  # rows by position: NETWORK_VIEW_COLUMNS begins with the id
        NetworkView.of(n, statuses[n.id], ips.get(n.id), True) if isinstance(n, Network)
        else NetworkView.of_row(n, statuses[n[0]], ips.get(n[0])) for n in networks
    ]  # fmt: skip


M = TypeVar("M", Network, ApiToken)


async def _tenant_page(
    session: AsyncSession, model: type[M], tenant_id: str, first: int, cursor: str | None
) -> Page[M]:
    """A keyset page of ``model`` rows of one tenant, oldest first."""
    mine = select(model).where(model.tenant_id == tenant_id)
    query = after(mine, model, cursor).order_by(model.created_at, model.id)
    rows = list(await session.scalars(query.limit(first + 1)))
    count = select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
    page = rows[:first]
    return Page(
        items=page,
        cursors=[encode_cursor(row.created_at, row.id) for row in page],
        has_next=len(rows) > first,
        total=await session.scalar(count) or 0,
    )


NETWORK_VIEW_COLUMNS = (
    Network.id, Network.tenant_id, Network.name, Network.consensus, Network.desired,
    Network.external_coordinator_ip, Network.created_at, Network.storage_size,
    Network.storage_class,
)  # fmt: skip


async def networks_page(
    session: AsyncSession,
    tenant_id: str,
    first: int,
    cursor: str | None,
    *,
    sort: Sort = OLDEST_FIRST,
    backward: bool = False,
    name_contains: str | None = None,
    status: NetworkStatus | None = None,
    nodes: NodeRows | None = None,
) -> Page[NetworkView]:
    """A keyset page of the tenant's networks in ``sort`` order (``first`` after ``cursor``,
    or with ``backward`` the ``first`` before it), with their count in the same statement
    (plain rows), and their nodes' statuses in one more. ``status`` is derived from the
    nodes, so that filter reads the tenant's networks (at most its ``max_networks``) and
    pages them here: the same two statements."""
    where = Network.tenant_id == tenant_id
    if name_contains:
        where = and_(where, Network.name.contains(name_contains, autoescape=True))
    if status is not None:
        return await _networks_of_status(
            session, where, status, first, cursor, sort, backward, nodes
        )
    if cursor is None and not name_contains:  # a first page, as dashboards poll it
        bound = {"tenant_id": tenant_id, "limit": first + 1}
        query = _first_networks(sort, backward)
        rows = list(await plain(session, query, bound))
        count: Any = _NETWORK_COUNT
    else:
        bound = {}
        count = select(func.count()).select_from(Network).where(where).scalar_subquery()
        query = select(*NETWORK_VIEW_COLUMNS, count.label("total")).where(where)
        rows = list(
            await session.execute(seek(query, Network, cursor, sort, backward).limit(first + 1))
        )
    page = rows[:first]
    total = rows[0].total if rows else await session.scalar(select(count), bound) or 0
    if backward:
        page.reverse()
    return _page(await network_views(session, page, nodes), len(rows) > first, total, cursor,
                 sort, backward)  # fmt: skip


_MINE = Network.tenant_id == bindparam("tenant_id")
_NETWORK_COUNT = select(func.count()).select_from(Network).where(_MINE).scalar_subquery()


@functools.cache
def _first_networks(sort: Sort, backward: bool) -> Select[Any]:
    """The first page of a tenant's networks in ``sort`` order, with their count (bound:
    ``tenant_id`` and ``limit``); one statement per order, built once."""
    query = select(*NETWORK_VIEW_COLUMNS, _NETWORK_COUNT.label("total")).where(_MINE)
    return seek(query, Network, None, sort, backward).limit(bindparam("limit"))


async def _networks_of_status(
    session: AsyncSession,
    where: Any,
    status: NetworkStatus,
    first: int,
    cursor: str | None,
    sort: Sort,
    backward: bool,
    nodes: NodeRows | None,
) -> Page[NetworkView]:
    rows = list(await session.execute(seek(select(*NETWORK_VIEW_COLUMNS).where(where), Network,
                                           None, sort, backward)))  # fmt: skip
    views = [v for v in await network_views(session, rows, nodes) if v.status is status]
    total = len(views)
    if cursor is not None:
        key = decode_name_cursor(cursor) if sort.by_name else decode_cursor(cursor)
        descending = sort.descending != backward

        def beyond(view: NetworkView) -> bool:
            mine = (view.name if sort.by_name else view.created_at, view.id)
            return mine < key if descending else mine > key

        views = [v for v in views if beyond(v)]
    page = views[:first]
    if backward:
        page.reverse()
    return _page(page, len(views) > first, total, cursor, sort, backward)


def _page(
    views: list[NetworkView], more: bool, total: int, cursor: str | None, sort: Sort,
    backward: bool,
) -> Page[NetworkView]:  # fmt: skip
    return Page(
        items=views,
        cursors=[cursor_of(view, sort) for view in views],
        has_next=cursor is not None if backward else more,
        has_previous=more if backward else cursor is not None,
        total=total,
    )


async def networks_of_tenant(
    session: AsyncSession, tenant_id: str, network_id: str | None = None
) -> list[NetworkView]:
    """The tenant's networks (or the one of them with ``network_id``), oldest first."""
    query = select(*NETWORK_VIEW_COLUMNS).where(Network.tenant_id == tenant_id)
    if network_id is not None:
        query = query.where(Network.id == network_id)
    rows = list(await session.execute(query.order_by(Network.created_at, Network.id)))
    return await network_views(session, rows)


async def tokens_page(
    session: AsyncSession, tenant_id: str, first: int, cursor: str | None
) -> Page[ApiToken]:
    return await _tenant_page(session, ApiToken, tenant_id, first, cursor)


async def tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def network_by_name(session: AsyncSession, tenant_id: str, name: str) -> NetworkView | None:
    network = await session.scalar(
        select(Network).where(Network.tenant_id == tenant_id, Network.name == name)
    )
    return (await network_views(session, [network]))[0] if network else None


async def networks_by_ids(
    session: AsyncSession, tenant_id: str, ids: Sequence[str]
) -> list[NetworkView | None]:
    query = select(Network).where(Network.tenant_id == tenant_id, Network.id.in_(ids))
    rows = {n.id: n for n in await session.scalars(query)}
    views = {v.id: v for v in await network_views(session, list(rows.values()))}
    return [views.get(i) for i in ids]


async def nodes_page(
    session: AsyncSession, network_id: str, first: int, cursor: str | None
) -> Page[NodeView]:
    """A page of the nodes of a network the caller already resolved within its tenant (for
    first pages of many networks at once, see ``first_node_pages``)."""
    query = after(
        select(Node, Network).join(Network).where(Node.network_id == network_id),
        Node,
        cursor,
    ).order_by(Node.created_at, Node.id)
    rows = list((await session.execute(query.limit(first + 1))).all())
    total = await session.scalar(select(func.count()).where(Node.network_id == network_id)) or 0
    page = rows[:first]
    return Page(
        items=[NodeView.of(node, network) for node, network in page],
        cursors=[encode_cursor(node.created_at, node.id) for node, _ in page],
        has_next=len(rows) > first,
        total=total,
    )


async def coordinators(
    session: AsyncSession, tenant_id: str, network_ids: Sequence[str]
) -> dict[str, NodeView]:
    """The coordinator (the oldest, were there several) of each of ``tenant_id``'s networks in
    ``network_ids`` that has one: one statement."""
    rows = await session.execute(
        select(Node, Network)
        .join(Network)
        .where(
            Network.tenant_id == tenant_id,
            Node.network_id.in_(network_ids),
            Node.role == NodeRole.COORDINATOR,
        )
        .order_by(Node.created_at, Node.id)
    )
    found: dict[str, NodeView] = {}
    for node, network in rows:
        found.setdefault(node.network_id, NodeView.of(node, network))
    return found


async def nodes_by_ids(
    session: AsyncSession, tenant_id: str, ids: Sequence[str]
) -> list[NodeView | None]:
    rows = await session.execute(
        select(Node, Network).join(Network).where(Network.tenant_id == tenant_id, Node.id.in_(ids))
    )
    found = {node.id: NodeView.of(node, network) for node, network in rows}
    return [found.get(i) for i in ids]


async def all_nodes(session: AsyncSession, tenant_id: str) -> list[NodeView]:
    rows = await session.execute(
        select(Node, Network)
        .join(Network)
        .where(Network.tenant_id == tenant_id)
        .order_by(Node.created_at, Node.id)
    )
    return [NodeView.of(node, network) for node, network in rows]


async def nodes_of_network(
    session: AsyncSession, tenant_id: str, network_id: str
) -> list[NodeView]:
    rows = await session.execute(
        select(Node, Network)
        .join(Network)
        .where(Network.tenant_id == tenant_id, Node.network_id == network_id)
        .order_by(Node.created_at, Node.id)
    )
    return [NodeView.of(node, network) for node, network in rows]


async def status_history(
    session: AsyncSession, node_ids: Sequence[str], last: int
) -> dict[str, list[StatusChangeView]]:
    """The ``last`` newest status changes of each node, oldest first: one statement, which
    returns at most ``last`` rows per node however long a node's history has grown."""
    history: dict[str, list[StatusChangeView]] = defaultdict(list)
    newest_first = (
        func.row_number()
        .over(partition_by=NodeStatusChange.node_id, order_by=NodeStatusChange.id.desc())
        .label("newest_first")
    )
    ranked = (
        select(NodeStatusChange.id, newest_first)
        .where(NodeStatusChange.node_id.in_(node_ids))
        .subquery()
    )
    rows = await session.scalars(
        select(NodeStatusChange)
        .join(ranked, ranked.c.id == NodeStatusChange.id)
        .where(ranked.c.newest_first <= last)
        .order_by(NodeStatusChange.node_id, NodeStatusChange.id)
    )
    for change in rows:
        history[change.node_id].append(StatusChangeView.of(change))
    return history


async def operations_by_ids(
    session: AsyncSession, tenant_id: str, ids: Sequence[str]
) -> list[OperationView | None]:
    query = select(Operation).where(Operation.tenant_id == tenant_id, Operation.id.in_(ids))
    found = {o.id: OperationView.of(o) for o in await session.scalars(query)}
    return [found.get(i) for i in ids]
