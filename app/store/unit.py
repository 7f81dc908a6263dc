"""The unit of work: one session, one transaction, and what to do once it has committed.

Services and the control loop write through a ``UnitOfWork`` and never commit on their own; the
caller that opened it decides. Events are published only after the commit (``after_commit``), so
no subscriber ever sees a state the database did not keep.

On SQLite, which has one write lock for the whole database, this process's units of work take
turns in asyncio (``app.store.engine.write_turn``) and each begins with ``BEGIN IMMEDIATE``:
writers queue in order instead of in SQLite's busy handler (which sleeps and retries, unfairly:
an unlucky writer could wait out the whole busy timeout), and a unit's reads see what it
writes on. Plain sessions (``sessions()``) are for reading and stay concurrent (WAL). If another
process holds the write lock past the busy timeout, the unit raises ``DatabaseBusy``.
PostgreSQL keeps its own concurrency (row locks where a service asks for them).

Example::

    async with UnitOfWork.begin(sessions) as work:
        result = await services.create_network(work, tenant_id, "acme", Consensus.RAFT, 300)
        if result.errors:
            work.discard()                      # roll back instead of committing
    # committed here (unless discarded), then the after_commit callbacks ran

    async with write_session(sessions) as session:   # the same, for a bare session
        await tenants.add(session, row)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from app.store.engine import DatabaseBusy, busy_error, write_turn

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
    async def begin(
        cls, sessions: async_sessionmaker[AsyncSession], *, urgent: bool = False
    ) -> AsyncIterator[UnitOfWork]:
        """One write transaction; ``DatabaseBusy`` if another process keeps SQLite's write
        lock longer than the busy timeout. ``urgent``: a caller waits for it (a mutation); on
        SQLite it goes before the control loop's queued writers."""
        # The turn ends with the transaction, before the session closes: AsyncSession closes
        # in a task of its own, so closing inside the turn kept it for a turn of the loop.
        async with sessions() as session, write_turn(sessions, urgent=urgent) as immediate:
            work = cls(session)
            try:
                if immediate:
                    await (await session.connection()).exec_driver_sql("BEGIN IMMEDIATE")
                yield work
                if work._discarded:
                    await session.rollback()
                    return
                await session.commit()
            except OperationalError as error:
                await session.rollback()
                if (busy := busy_error(sessions, error)) is not None:
                    raise busy from error
                raise
            except BaseException:
                await session.rollback()
                raise
        for callback in work._after_commit:
            callback()


@contextlib.asynccontextmanager
async def write_session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in its own unit of work: committed at the end unless it raised."""
    async with UnitOfWork.begin(sessions) as work:
        yield work.session


__all__ = ["DatabaseBusy", "RowVanished", "UnitOfWork", "write_session"]
