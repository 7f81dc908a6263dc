"""Operations: what a mutation started, moved along as its node's status changes.

Example::

    for operation in await unfinished(session, node_id=node.id, kinds=STARTING_KINDS):
        operation.state = OperationState.STARTING
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.enums import OperationKind, OperationState
from app.store.models import Operation, utcnow

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
