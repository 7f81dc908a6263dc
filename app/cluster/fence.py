"""The fence: whether this replica may still write as the leader, and until when.

A replica leads while it holds the control Lease (``lease.py``). Every write of the control
loop (a create, replace or delete sent to the Kubernetes API, a database transaction of the
node writer or of removal) first asks the fence: after the last renewal that succeeded began at
``t``, new writes may start until ``t + renew deadline``; a write already under way is cut
(cancelled, its transaction rolled back) at ``t + lease duration - margin``. No other replica can
take the lease before ``t + lease duration``: it must see the renewed record unchanged for a
whole lease duration, and it cannot see it before the renewal began. So once leadership is lost
nothing more is sent, and what was sent before has had the time a request takes to land.
(What no client can promise: a request the server received in time but applies later.)

Times are ``time.monotonic()``: a wall clock that jumps must not extend a lease.

Example::

    fence = Fence()
    fence.grant(renewed_at=t, renew_deadline=10, lease_seconds=15)
    async with fence.guard():          # raises Fenced once leadership is lost
        await api.create(obj)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from app.cluster.errors import KubeError

# A write under way is cut this long before the lease may expire for others.
MARGIN_SECONDS = 1.0


class Fenced(KubeError):
    """This replica does not hold the control lease (any more): it may not write."""

    def __init__(self, message: str = "this replica is not the leader: the write is refused"):
        super().__init__(message)


class Fence:
    """Open while this replica holds the lease; ``open`` says so, ``guard`` enforces it."""

    def __init__(self) -> None:
        self._start_until = 0.0  # new writes may start before this
        self._cut_at = 0.0  # writes under way are cancelled at this
        self.epoch = 0  # bumped each time leadership is gained (a new term)
        self.refused = 0  # writes refused or cut since the process started

    def grant(self, renewed_at: float, renew_deadline: float, lease_seconds: float) -> None:
        """The renewal that began at ``renewed_at`` (monotonic) succeeded."""
        if not self.open:
            self.epoch += 1
        self._start_until = renewed_at + renew_deadline
        self._cut_at = renewed_at + max(renew_deadline, lease_seconds - MARGIN_SECONDS)

    def revoke(self) -> None:
        """Leadership is lost (or given up): nothing more may start."""
        self._start_until = self._cut_at = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._start_until

    @property
    def closes_at(self) -> float:
        """Monotonic time after which no write starts (0: closed)."""
        return self._start_until

    @property
    def cut_at(self) -> float:
        """Monotonic time by which a write under way is cut (0: closed)."""
        return self._cut_at

    def left(self) -> float:
        """Seconds during which new writes may still start (0 when closed)."""
        return max(0.0, self._start_until - time.monotonic())

    def check(self) -> float:
        """Raise ``Fenced`` unless a write may start now; returns the seconds until a write
        under way would be cut."""
        now = time.monotonic()
        if now >= self._start_until:
            self.refused += 1
            raise Fenced()
        return self._cut_at - now

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """A write: refused unless the fence is open, cancelled if it outlives the lease."""
        left = self.check()
        try:
            async with asyncio.timeout(left):
                yield
        except TimeoutError:
            if time.monotonic() < self._cut_at:
                raise  # the write's own timeout, not ours
            self.refused += 1
            raise Fenced("the lease ran out while the write was under way: it was cut") from None


class NoFence(Fence):
    """Leader election is off (one replica): every write may go."""

    @property
    def open(self) -> bool:
        return True

    def left(self) -> float:
        return float("inf")

    def check(self) -> float:
        return float("inf")

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        yield
