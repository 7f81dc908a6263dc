"""The API's answers come first: background work waits for a moment with no request in flight.

The API, the reconciler and the pod observer share one event loop and, on a small machine, one
core. asyncio runs ready callbacks first come, first served, so a request that arrives while
the reconciler creates a hundred networks' objects waits behind all of that work: the answer
path alone answered ``networkCreate`` at half its maximum rate with a p99 of 21 ms, the same
process with its control loop running 212 ms (bench/mutations.py, ``--follower`` against the
leader). ``Foreground`` counts the GraphQL requests being answered (``HttpGuard`` enters
``serving`` for each); background work calls ``yield_to_requests`` between its units (the
reconciler's turns, each pod change the observer writes) and, while a request is in flight,
waits until none is, for at most ``max_defer`` seconds, so that under a load that never
pauses the control loop still makes one unit of progress every ``max_defer``.

What it costs: a node's status and a new network's objects lag the API by what the API keeps
busy; on an idle server nothing waits (the check is one integer comparison).

Example::

    with FOREGROUND.serving():              # around an answer
        ...
    await FOREGROUND.yield_to_requests()   # between two units of background work
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

MAX_DEFER_SECONDS = 0.1


class Foreground:
    """Requests in flight, and a wait for none to be."""

    def __init__(self, max_defer: float = MAX_DEFER_SECONDS) -> None:
        self.max_defer = max_defer
        self.in_flight = 0
        self.deferred = 0  # waits that found a request in flight (for tests and metrics)
        self._quiet: asyncio.Event | None = None  # bound to the loop that waits on it
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count a request as in flight for the block."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._quiet is not None:
                self._quiet.set()

    async def yield_to_requests(self) -> bool:
        """Return at once if no request is in flight (no suspension); otherwise wait until
        none is, or ``max_defer`` seconds. True if it waited."""
        if not self.in_flight:
            return False
        self.deferred += 1
        loop = asyncio.get_running_loop()
        if self._quiet is None or self._loop is not loop:  # first use, or a new loop (tests)
            self._quiet, self._loop = asyncio.Event(), loop
        quiet = self._quiet
        quiet.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_defer):
                await quiet.wait()
        return True


# The process's API and its background work meet here (one API per process).
FOREGROUND = Foreground()
