"""The running service's shared parts, built once by the composition root (``app.server``).

The GraphQL layer receives this object and nothing else of the app's wiring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.bus import EventBus
from app.ratelimit import RateLimiter


@dataclass
class Runtime:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    # Wakes the reconciler after a mutation wrote desired state (a no-op without one).
    kick: Callable[[], None] = lambda: None
    cluster_reachable: Callable[[], Awaitable[bool]] | None = None
    cluster_description: str = "none"
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(60, 20))
