"""When each token was last used: ``ApiToken.last_used_at``, written off the request path.

Authentication calls ``TokenUse.used(token_id)``; the write happens in a background task, at
most once per token per ``QAAS_TOKEN_TOUCH_SECONDS`` in this process (the throttle is in
memory: each replica writes on its own, so the time is at most that far behind). Tokens used
while a write runs go in the next one, a batch. A write that fails is logged at WARNING and
its tokens may be written again on their next use.

Example::

    use = TokenUse(sessions, every=60)
    use.used(principal.token_id)     # returns at once
    await use.stop()                 # writes what is pending
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.store.models import utcnow
from app.store.token_checks import mark_used
from app.store.unit import write_session

log = logging.getLogger("qaas.tokens")

# Past this many remembered tokens, those outside the throttle window are forgotten.
PRUNE_AT = 10_000


class TokenUse:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions, self.every, self.clock = sessions, every, clock
        self._last: dict[str, float] = {}  # token id -> when its use was last recorded
        self._pending: dict[str, datetime.datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def used(self, token_id: str) -> None:
        """Note that ``token_id`` authenticated now; schedules a write unless one was made
        (in this process) less than ``every`` seconds ago."""
        now = self.clock()
        last = self._last.get(token_id)
        if last is not None and now - last < self.every:
            return
        if len(self._last) >= PRUNE_AT:
            self._last = {k: t for k, t in self._last.items() if now - t < self.every}
        self._last[token_id] = now
        self._pending[token_id] = utcnow()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write(), name="token-use")

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                async with write_session(self.sessions) as session:
                    await mark_used(session, batch)
            except Exception as error:
                log.warning(
                    "could not record the last use of %d token(s): %s: %s",
                    len(batch), type(error).__name__, str(error)[:200],
                )  # fmt: skip
                for token_id in batch:  # the next use tries again
                    self._last.pop(token_id, None)

    async def stop(self) -> None:
        """Wait for the write under way (and what it picks up)."""
        if self._task is not None:
            await asyncio.shield(self._task)
