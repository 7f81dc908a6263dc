"""The open WebSocket connections of this process, by token and by client address.

Each connection is counted against its client address when the socket is accepted
(``QAAS_MAX_WS_PER_ADDRESS``) and against its token once ``connection_init`` authenticated it
(``QAAS_MAX_WS_PER_TOKEN``); over either cap it is refused with close code 4429. A connection
frees its place when it ends, however it ends (``release``).

Tokens end while sockets are open. A sweeper checks the tokens of all open connections against
the database every ``QAAS_TOKEN_RECHECK_SECONDS`` (one query per 500 tokens; it runs only while
connections are open) and ends every connection whose token was revoked, has expired or is gone
(its tenant deleted), from this process or any other: close code 4403 with the reason.
``tokenRevoke`` in this process ends its connections at once (``end_token``), and so does, on
PostgreSQL, a revocation or tenant deletion anywhere else once its NOTIFY arrives (the event bus
calls it).

What a subscriber can receive: once a connection is ended, nothing more is sent on it (the
delivery path asks ``deliverable`` before every message), and a token's expiry is checked there
too, so nothing is sent after ``expires_at``. A revocation is known to this process at once
(``tokenRevoke`` here; elsewhere, on PostgreSQL, once its NOTIFY arrives) or within
``QAAS_TOKEN_RECHECK_SECONDS`` (the CLI on SQLite; on PostgreSQL a bus that reconnects checks at
once, ``check``); events published before it is known may still be delivered. The socket is
closed within ``QAAS_TOKEN_RECHECK_SECONDS`` plus a second of the revocation. Behind a proxy the
address is the proxy's unless uvicorn runs with ``--proxy-headers``.

Example::

    connection = connections.open("10.0.0.7", close)     # raises Refused over the address cap
    connections.bind(connection, principal)              # raises Refused over the token cap
    ...
    connections.release(connection)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.tenancy import Principal
from app.store.models import utcnow
from app.store.token_checks import token_states

log = logging.getLogger("qaas.connections")

TOO_MANY = 4429
FORBIDDEN = 4403
REVOKED = "token revoked"
EXPIRED = "token expired"
GONE = "token no longer exists"


class Refused(Exception):
    """A connection that may not go on: close it with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(eq=False)
class Connection:
    address: str
    close: Callable[[int, str], Awaitable[None]]  # closes the socket with a code and reason
    token_id: str | None = None
    expires_at: datetime.datetime | None = None
    ended: str | None = None  # why it was ended (then nothing more may be sent)


class Connections:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        per_token: int,
        per_address: int,
        recheck_seconds: float,
    ) -> None:
        self.sessions = sessions
        self.per_token, self.per_address = per_token, per_address
        self.recheck_seconds = recheck_seconds
        self._open: set[Connection] = set()
        self._by_address: Counter[str] = Counter()
        self._by_token: Counter[str] = Counter()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, address: str, close: Callable[[int, str], Awaitable[None]]) -> Connection:
        """Count a newly accepted socket from ``address``; Refused over the address cap."""
        if self._by_address[address] >= self.per_address:
            raise Refused(TOO_MANY, f"too many WebSocket connections from {address} "
                          f"(at most {self.per_address})")  # fmt: skip
        connection = Connection(address, close)
        self._open.add(connection)
        self._by_address[address] += 1
        return connection

    def bind(self, connection: Connection, principal: Principal) -> None:
        """The connection authenticated as ``principal``; Refused over the token cap."""
        if connection.token_id is not None:  # connection_init is accepted once
            return
        token = principal.token_id
        if self._by_token[token] >= self.per_token:
            raise Refused(TOO_MANY, f"too many WebSocket connections with this token "
                          f"(at most {self.per_token})")  # fmt: skip
        connection.token_id, connection.expires_at = token, principal.expires_at
        self._by_token[token] += 1
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="token-recheck"
            )

    def release(self, connection: Connection) -> None:
        """The connection is over: its places are free again. Twice is harmless."""
        if connection not in self._open:
            return
        self._open.discard(connection)
        connection.ended = connection.ended or "closed"
        for counter, key in ((self._by_address, connection.address),
                             (self._by_token, connection.token_id)):  # fmt: skip
            if key is not None:
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def deliverable(self, connection: Connection) -> bool:
        """May a message go out on ``connection`` now? Not once it was ended, nor once its
        token expired (which ends it)."""
        if connection.ended is not None:
            return False
        if connection.expires_at is not None and connection.expires_at <= utcnow():
            self.end(connection, EXPIRED)
            return False
        return True

    def end(self, connection: Connection, reason: str) -> None:
        """Send nothing more on ``connection`` and close it with 4403 and ``reason``."""
        if connection.ended is not None:
            return
        connection.ended = reason
        log.info("closing a WebSocket from %s: %s", connection.address, reason)
        task = asyncio.get_running_loop().create_task(self._close(connection, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def end_token(self, token_id: str, reason: str = REVOKED) -> None:
        """End every connection of ``token_id`` (revoked here, or heard of on the bus)."""
        for connection in list(self._open):
            if connection.token_id == token_id:
                self.end(connection, reason)

    async def check(self) -> None:
        """Check the tokens of all open connections against the database once."""
        bound = [c for c in self._open if c.token_id is not None and c.ended is None]
        if not bound:
            return
        try:
            async with self.sessions() as session:
                states = await token_states(session, {c.token_id for c in bound if c.token_id})
        except Exception as error:
            log.warning("could not check the tokens of %d open WebSocket(s): %s: %s",
                        len(bound), type(error).__name__, str(error)[:200])  # fmt: skip
            return
        now = utcnow()
        for connection in bound:
            assert connection.token_id is not None
            state = states.get(connection.token_id)
            if state is None:
                self.end(connection, GONE)
            elif state[0] is not None:
                self.end(connection, REVOKED)
            else:
                connection.expires_at = state[1]
                if state[1] is not None and state[1] <= now:
                    self.end(connection, EXPIRED)

    async def stop(self) -> None:
        """Stop checking (at shutdown); closes under way are let finish."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if self._closing:
            await asyncio.wait(set(self._closing))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_seconds)
            if not any(c.token_id is not None for c in self._open):
                self._sweeper = None  # no await since the test: bind starts a new one
                return
            try:
                await self.check()
            except Exception:  # a bug: say it, and keep checking
                log.exception("checking open WebSockets' tokens failed")

    async def _close(self, connection: Connection, reason: str) -> None:
        try:
            await connection.close(FORBIDDEN, reason)
        except (RuntimeError, OSError):
            pass  # the socket closed meanwhile (starlette's WebSocketDisconnected is one)
