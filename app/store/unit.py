"""The unit of work: one session, one transaction, and what to do once it has committed.

Services and the control loop write through a ``UnitOfWork`` and never commit on their own; the
caller that opened it decides. Events are published only after the commit (``after_commit``), so
no subscriber ever sees a state the database did not keep.

Example::

    async with UnitOfWork.begin(sessions) as work:
        result = await services.create_network(work, tenant_id, "acme", Consensus.RAFT, 300)
        if result.errors:
            work.discard()                      # roll back instead of committing
    # committed here (unless discarded), then the after_commit callbacks ran
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

# Raised when a unit of work updates a row that another one deleted after it was read (on
# databases without row locks): the caller may start over from a fresh read.
RowVanished = StaleDataError

log = logging.getLogger("qaas.store")


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after_commit: list[Callable[[], None]] = []
        self._discarded = False

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    def discard(self) -> None:
        """Roll back instead of committing when the unit of work ends."""
        self._discarded = True

    @classmethod
    @contextlib.asynccontextmanager
    async def begin(cls, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[UnitOfWork]:
        async with sessions() as session:
            work = cls(session)
            try:
                yield work
            except BaseException:
                await session.rollback()
                raise
            if work._discarded:
                await session.rollback()
                return
            await session.commit()
        for callback in work._after_commit:
            callback()
