"""What a service hands back: the objects it wrote, the operation it started, or refusals.

Example::

    result = refused("name", "no such network", ErrorCode.NOT_FOUND)
    result.errors[0].field     # ("input", "name")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.errors import ErrorCode, UserError
from app.store.read_models import NetworkView, NodeView, OperationView
from app.store.unit import UnitOfWork


@dataclass(frozen=True)
class Result:
    network: NetworkView | None = None
    node: NodeView | None = None
    operation: OperationView | None = None
    errors: list[UserError] = field(default_factory=list)


def refused(path: str, message: str, code: ErrorCode) -> Result:
    """A result with one refusal about the input field ``path``."""
    return Result(errors=[UserError(("input", path), message, code)])


def name_refusal(path: str, name: str, problem: str | None) -> list[UserError]:
    """``[INVALID_NAME refusal]`` if there is a ``problem`` with ``name``, else ``[]``."""
    if problem is None:
        return []
    return [UserError(("input", path), f'"{name}" {problem}', ErrorCode.INVALID_NAME)]


async def commit_unless_refused(
    sessions: async_sessionmaker[AsyncSession], change: Callable[[UnitOfWork], Awaitable[Result]]
) -> Result:
    """Run one service in its own unit of work: committed, unless it refused (then nothing it
    wrote is kept). A caller waits for it: on SQLite it goes before the control loop's
    queued writes."""
    async with UnitOfWork.begin(sessions, urgent=True) as work:
        result = await change(work)
        if result.errors:
            work.discard()
    return result
