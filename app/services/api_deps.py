"""What the API layer (GraphQL over HTTP and WebSocket) is handed by the composition root
(``app.server``), and nothing else of the app's wiring: settings, the database's units of work,
the event bus, the reconciler's wake-up call, the mutation rate limiter, the cluster's health
and its pods' logs, the open WebSockets (``connections``), who bearer tokens are (``tokens``,
remembered briefly) and the record of tokens' last use (``token_use``); ``close`` stops the
last two, before the database goes.

Example::

    async with deps.unit_of_work() as work:
        token = await revoke_token(work.session, token_id, tenant_id)
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.bus import EventBus
from app.services.connections import GONE, REVOKED, Connections
from app.services.ratelimit import RateLimiter
from app.services.token_cache import TokenCache
from app.services.token_use import TokenUse
from app.store.unit import UnitOfWork


@dataclass
class ApiDeps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    # Wakes the reconciler after a mutation wrote a network's desired state (its id: the pass
    # may cover that network only; None: every network). A no-op without a reconciler.
    kick: Callable[[str | None], None] = lambda _network_id: None
    cluster_reachable: Callable[[], Awaitable[bool]] | None = None
    cluster_description: str = "none"
    # The control loop's parts failing for too long, by name, with why (for /readyz).
    control_problems: Callable[[], dict[str, str]] = dict
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(60, 20))
    # Reads a node pod's log (see app.services.logs.PodLogReader); None until connected.
    pod_log: Callable[[str, str, int, int], Awaitable[str | None]] | None = None
    connections: Connections = field(init=False)
    token_use: TokenUse = field(init=False)
    tokens: TokenCache = field(init=False)  # who a bearer token is (authenticate with it)

    def __post_init__(self) -> None:
        settings = self.settings
        self.connections = Connections(
            self.sessions,
            per_token=settings.max_ws_per_token,
            per_address=settings.max_ws_per_address,
            recheck_seconds=settings.token_recheck_seconds,
        )
        self.token_use = TokenUse(self.sessions, settings.token_touch_seconds)
        # As long as a token revoked elsewhere may keep an open WebSocket (Connections).
        self.tokens = TokenCache(
            self.sessions, settings.token_recheck_seconds, used=self.token_use.used
        )

    def token_ended(self, token_id: str, deleted: bool = False) -> None:
        """``token_id`` was revoked (or deleted with its tenant) and that has committed: its
        next request is refused, not answered from what was remembered of it, and its open
        WebSockets in this process end now."""
        self.tokens.forget(token_id)
        self.connections.end_token(token_id, GONE if deleted else REVOKED)

    async def tokens_unheard(self) -> None:
        """The event bus may have missed revocations (it was reconnecting): forget every
        remembered token and check the open WebSockets' tokens now, not at the next sweep."""
        self.tokens.forget_all()
        await self.connections.check()

    async def close(self) -> None:
        """Stop checking open WebSockets' tokens and write the pending last uses."""
        await self.connections.stop()
        await self.token_use.stop()

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """One transaction for a request: committed at the end unless discarded or failed; on
        SQLite it is written before the control loop's queued transactions."""
        return UnitOfWork.begin(self.sessions, urgent=True)
