"""Per-token rate limits on mutations: a token bucket per API token, in memory.

Each replica limits on its own; with several replicas the effective limit is at most
replicas x rate, which is the intent (a brake on abuse, not billing).

Example::

    limiter = RateLimiter(per_minute=60, burst=20)
    wait = limiter.take("token-id")      # 0.0 if allowed, else seconds until it would be
"""

from __future__ import annotations

import time
from collections import OrderedDict

from app.metrics import RATE_LIMITED


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one unit for ``key``: 0.0 if allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            RATE_LIMITED.inc()
        while len(self._buckets) > self.max_keys:  # forget the least recently seen
            self._buckets.popitem(last=False)
        return wait
