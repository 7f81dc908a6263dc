"""Operations: what a mutation started, moved along as its node's status changes.

Example::

    for operation in await unfinished(session, node_id=node.id, kinds=STARTING_KINDS):
        operation.state = OperationState.STARTING
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import OperationKind, OperationState
from app.store.models import Operation, utcnow
from app.store.pages import Page, Sort, cursor_of, seek
from app.store.read_models import OperationView

FINISHED = (OperationState.SUCCEEDED, OperationState.FAILED)


async def add(session: AsyncSession, operation: Operation) -> Operation:
    session.add(operation)
    await session.flush()
    return operation


async def unfinished(
    session: AsyncSession,
    *,
    kinds: Sequence[OperationKind],
    node_id: str | None = None,
    network_id: str | None = None,
) -> list[Operation]:
    """The operations of these kinds on this node or network that are not finished yet."""
    query = select(Operation).where(Operation.kind.in_(kinds), Operation.state.not_in(FINISHED))
    if node_id is not None:
        query = query.where(Operation.node_id == node_id)
    if network_id is not None:
        query = query.where(Operation.network_id == network_id)
    return list(await session.scalars(query.order_by(Operation.created_at)))


async def mark_node_deletes_started(session: AsyncSession, node_id: str) -> None:
    """Pending NODE_DELETE operations of this node are now DELETING."""
    await session.execute(
        update(Operation)
        .where(
            Operation.node_id == node_id,
            Operation.kind == OperationKind.NODE_DELETE,
            Operation.state == OperationState.PENDING,
        )
        .values(state=OperationState.DELETING, updated_at=utcnow())
    )


NEWEST_FIRST = Sort(descending=True)


async def page(
    session: AsyncSession,
    tenant_id: str,
    first: int,
    cursor: str | None,
    *,
    backward: bool = False,
    network_id: str | None = None,
    state: OperationState | None = None,
) -> Page[OperationView]:
    """A keyset page of the tenant's operations, newest first (``backward``: the ``first``
    before ``cursor``), with their count in the same statement."""
    where = Operation.tenant_id == tenant_id
    if network_id is not None:
        where = and_(where, Operation.network_id == network_id)
    if state is not None:
        where = and_(where, Operation.state == state)
    count = select(func.count()).select_from(Operation).where(where).scalar_subquery()
    query = seek(select(Operation, count.label("total")).where(where), Operation, cursor,
                 NEWEST_FIRST, backward)  # fmt: skip
    rows = list(await session.execute(query.limit(first + 1)))
    chosen = rows[:first]
    total = rows[0].total if rows else await session.scalar(select(count)) or 0
    if backward:
        chosen.reverse()
    more = len(rows) > first
    return Page(
        items=[OperationView.of(row.Operation) for row in chosen],
        cursors=[cursor_of(row.Operation, NEWEST_FIRST) for row in chosen],
        has_next=cursor is not None if backward else more,
        has_previous=more if backward else cursor is not None,
        total=total,
    )
