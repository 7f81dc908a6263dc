"""The PostgreSQL event bus's listening connection, kept up (app/events/pg_bus.py).

``Listener.run`` connects, LISTENs on the bus's channels, lets the bus catch up on what it
missed (``caught_up``), and only then says it is ``connected``; it then holds the connection,
running a heartbeat query every ``heartbeat_seconds`` (a connection that stops answering is as
lost as one that breaks). When the connection cannot be made or is lost, it tries again after a
backoff with jitter (``retry_first_seconds``, doubling up to ``retry_max_seconds``; back to the
first after a connection that was up).

While it is not connected, this replica hears nothing of the other replicas' changes:
``problem`` says so, with why, once that has lasted longer than a threshold (for /readyz), and
``qaas_event_bus_reconnects`` counts the failed attempts and the lost connections.

Example::

    listener = Listener(dsn, ["qaas_nodes"], heard, caught_up)
    task = asyncio.create_task(listener.run())
    await listener.connected.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from app.domain.text import one_line
from app.metrics import EVENT_BUS_RECONNECTS

log = logging.getLogger("qaas.events")

LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, ConnectionError)
# asyncpg's listener callback: (connection, server pid, channel, payload).
Heard = Callable[[Any, int, str, Any], None]


class Listener:
    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        heard: Heard,
        caught_up: Callable[[], Awaitable[None]],
        *,
        heartbeat_seconds: float = 5.0,
        retry_first_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
    ) -> None:
        # asyncpg's own DSN: SQLAlchemy's URL without the "+asyncpg" driver name.
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.channels, self.heard, self.caught_up = list(channels), heard, caught_up
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_first_seconds, self.retry_max_seconds = retry_first_seconds, retry_max_seconds
        self.connected = asyncio.Event()  # set while LISTENing and caught up
        # Since when it has not been (monotonic seconds; None while it is), and why.
        self.down_since: float | None = time.monotonic()
        self.why_down = "it has not connected yet"
        self.reconnects = 0  # connections lost or failed after connecting (for tests)
        self._connection: asyncpg.Connection[Any] | None = None

    @property
    def pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        connection = self._connection
        return None if connection is None else connection.get_server_pid()

    def problem(self, after_seconds: float) -> str | None:
        """Why this replica has not heard the others' changes for over ``after_seconds``, or
        None (a short outage, caught up afterwards, does not count)."""
        since = self.down_since
        if since is None or time.monotonic() - since <= after_seconds:
            return None
        return (
            f"the event bus has not listened on PostgreSQL for {time.monotonic() - since:.0f} s"
            f" ({self.why_down}): this replica's subscribers miss the other replicas' changes"
        )

    async def run(self) -> None:
        """Listen until cancelled, connecting again whenever the connection is lost."""
        delay = self.retry_first_seconds
        while True:
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
            except Exception as error:  # unreachable, refused, not there yet: try again
                log.warning("event bus: cannot connect to listen: %s", error)
                self.why_down = f"it cannot connect to listen: {_said(error)}"
            else:
                try:
                    await self._serve(connection)
                except LOST as error:
                    log.warning("event bus: the listening connection was lost: %s", error)
                    self.why_down = f"its listening connection was lost: {_said(error)}"
                except Exception as error:  # e.g. the catch-up's read (tables not migrated yet)
                    log.exception("event bus: listening failed; trying again")
                    self.why_down = f"listening failed: {_said(error)}"
                finally:
                    if self.connected.is_set():  # it was up: start the backoff afresh
                        delay = self.retry_first_seconds
                        self.down_since = time.monotonic()
                    self.connected.clear()
                    self._connection = None
                    connection.terminate()
                self.reconnects += 1
            EVENT_BUS_RECONNECTS.inc()
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.retry_max_seconds)

    async def _serve(self, connection: asyncpg.Connection[Any]) -> None:
        """LISTEN, catch up, then hold the connection until it is lost."""
        self._connection = connection
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        for channel in self.channels:
            await connection.add_listener(channel, self.heard)
        await self.caught_up()
        self.connected.set()
        self.down_since = None
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self.heartbeat_seconds)
            if not lost.is_set():
                await asyncio.wait_for(connection.execute("SELECT 1"), self.heartbeat_seconds)
        raise ConnectionError("the server closed it")


def _said(error: BaseException) -> str:
    """What went wrong, on one line: the driver's own words, not SQLAlchemy's wrapping (the
    statement, a link to its docs)."""
    return one_line(getattr(error, "orig", None) or error, 200)
