"""Two PostgreSQL buses on one database, as two replicas would run them (tests/events)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.events.pg_bus import NodeSource, PostgresBus


@contextlib.asynccontextmanager
async def two_buses(
    database_url: str, one: NodeSource, two: NodeSource
) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    """Both started and listening; the second reconnects slowly, long enough for changes to
    fall in its gap."""
    buses = (PostgresBus(database_url, one), PostgresBus(database_url, two,
                                                        retry_first_seconds=2.0))  # fmt: skip
    for bus in buses:
        await bus.start()
    try:
        for bus in buses:
            await asyncio.wait_for(bus.connected.wait(), 10)
        yield buses
    finally:
        for bus in buses:
            await bus.stop()
