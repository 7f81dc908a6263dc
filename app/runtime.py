"""The running service's shared parts, built once by the composition root (``app.server``).

The GraphQL layer receives this object and nothing else of the app's wiring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.bus import EventBus


@dataclass
class Runtime:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    # Wakes the reconciler after a mutation wrote desired state (a no-op without one).
    kick: Callable[[], None] = lambda: None
    cluster_reachable: Callable[[], Awaitable[bool]] | None = None
    cluster_description: str = "none"
    notes: list[str] = field(default_factory=list)
