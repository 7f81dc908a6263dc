"""Who a bearer token is, remembered for a short while: one database read per token per
``ttl`` seconds instead of one per request.

What is remembered is the ``Principal`` a successful ``authenticate`` returned, by the token's
hash (never the secret). A hit is checked again against the token's expiry, so an expired token
is refused at once. A token revoked in this process is forgotten at once (``forget``, which the
revoking mutation calls after its commit): its next request reads the database and is refused.
On PostgreSQL a token revoked elsewhere (``qaas token revoke``, another replica, a tenant
deleted) is forgotten as soon as its NOTIFY arrives (the event bus calls ``forget``); otherwise,
or if that was missed, it is refused within ``ttl`` (or sooner: a bus that reconnects calls
``forget_all``), as open WebSockets are (``QAAS_TOKEN_RECHECK_SECONDS``). Refusals are not
remembered.

Example::

    tokens = TokenCache(sessions, ttl=2.0, used=token_use.used)
    principal = await tokens.authenticate(secret)      # AuthError if no one
    tokens.forget(principal.token_id)                  # after its revocation committed
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.tenancy import AuthError, Principal, authenticate, hash_secret
from app.store.models import utcnow

# Past this many remembered tokens, the memory starts again from empty.
MAX_TOKENS = 10_000


class TokenCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        used: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions, self.ttl, self.used, self.clock = sessions, ttl, used, clock
        self._known: dict[str, tuple[Principal, float]] = {}  # hash -> (who, read at)
        # Bumped by ``forget``: a read that began before a revocation is not remembered.
        self._generation = 0

    async def authenticate(self, secret: str | None) -> Principal:
        """Who ``secret`` is (``tenancy.authenticate``, or what it said less than ``ttl``
        seconds ago); AuthError if no one."""
        if not secret:
            raise AuthError("authentication required: send `Authorization: Bearer <token>`")
        key = hash_secret(secret)
        known = self._known.get(key)
        if known is not None:
            principal, read_at = known
            if self.clock() - read_at < self.ttl:
                if principal.expires_at is not None and principal.expires_at <= utcnow():
                    del self._known[key]
                    raise AuthError("this token has expired")
                if self.used is not None:
                    self.used(principal.token_id)
                return principal
            del self._known[key]
        generation, read_at = self._generation, self.clock()
        principal = await authenticate(self.sessions, secret, self.used)
        if generation == self._generation:
            if len(self._known) >= MAX_TOKENS:
                self._known.clear()
            self._known[key] = (principal, read_at)
        return principal

    def forget_all(self) -> None:
        """Every token's next request reads the database (revocations may have been missed)."""
        self._generation += 1
        self._known.clear()

    def forget(self, token_id: str) -> None:
        """``token_id`` was revoked (or deleted): its next request reads the database."""
        self._generation += 1
        for key in [k for k, (who, _) in self._known.items() if who.token_id == token_id]:
            del self._known[key]
