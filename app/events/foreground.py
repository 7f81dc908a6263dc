"""The API's answers come first: the control loop's units of work start in quiet moments.

The API, the reconciler and the pod observer share one event loop and, on a small machine, one
core. asyncio runs ready callbacks first come, first served, so a request that arrives while the
control loop records the pods of a thousand new networks waits behind all of that work.
``Foreground`` counts the GraphQL requests being answered (``HttpGuard`` enters ``serving`` for
each), and the control loop asks it for a ``turn`` before each unit of its work (a node's write,
a step of a pass):

- with no request in flight and nobody waiting, the turn is given at once, without suspending;
- otherwise the unit waits in line. Units are let go one at a time, and only when no request is
  in flight: the next one only after the last one has run and the loop has polled its sockets
  again (a timer), so a request that arrived while a unit ran goes before the next one, and a
  request in flight holds back the rest of the line;
- while requests never stop coming, one unit still goes every ``max_defer`` seconds, so the
  control loop always makes progress.

A unit of work runs for a few milliseconds; a request that arrives while one runs waits for it,
not for the whole line. What it costs: under load, a node's status and a new network's objects
trail the API's answers by as long as the API keeps the core busy, and catch up when it is
quieter (``bench/mutations.py`` counts what the control loop still had to do when its load
stopped, and how fast it went on). On an idle server nothing waits.

Example::

    with foreground.serving():       # around an answer
        ...
    await foreground.turn()          # before a unit of background work
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator

MAX_DEFER_SECONDS = 0.05


class Foreground:
    """Requests in flight, and the line of background units waiting for a quiet moment."""

    def __init__(self, max_defer: float = MAX_DEFER_SECONDS) -> None:
        self.max_defer = max_defer
        self.in_flight = 0
        self.deferred = 0  # turns that had to wait (for tests)
        self._line: collections.deque[asyncio.Future[None]] = collections.deque()
        self._out: asyncio.Future[None] | None = None  # let go, and not yet running
        self._next: asyncio.Handle | None = None  # the head of the line goes then (_next_at)
        self._next_at = 0.0
        self._since = 0.0  # loop time the last unit went, or the line began to wait

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count a request as in flight for the block."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._let_go_soon()

    async def turn(self) -> bool:
        """Return at once if nothing is in flight or waiting; otherwise wait for this unit's
        turn (see the module). True if it waited."""
        if not self.in_flight and not self._line and self._out is None:
            return False
        self.deferred += 1
        loop = asyncio.get_running_loop()
        if not self._line and self._out is None:
            self._since = loop.time()
        waiter = loop.create_future()
        self._line.append(waiter)
        try:
            self._let_go_soon()
            await waiter
        finally:
            waiter.cancel()  # left the line early (cancelled, an error): its turn is skipped
            if self._out is waiter:  # running now, or let go and then cancelled: next, please
                self._out = None
                self._let_go_soon()
        return True

    @property
    def waiting(self) -> int:
        """Units in line (not counting one let go that has not run yet)."""
        return len(self._line)

    def _let_go_soon(self) -> None:
        """Let the head of the line go when its time comes: after the loop's next poll of its
        sockets if no request is in flight, else ``max_defer`` after the last unit went.
        Nothing while a unit let go has not run yet (it calls this when it does)."""
        if not self._line or self._out is not None:
            return
        loop = asyncio.get_running_loop()
        when = self._since + self.max_defer if self.in_flight else loop.time()
        if self._next is not None:
            if self._next_at <= when:
                return
            self._next.cancel()
        # A timer even when due now: the loop polls its sockets first. Not the handle's when():
        # uvloop turns a timer already due into a plain callback.
        self._next, self._next_at = loop.call_at(when, self._let_go), when

    def _let_go(self) -> None:
        self._next = None
        while self._line and self._line[0].done():  # cancelled while waiting
            self._line.popleft()
        if not self._line or self._out is not None:
            return
        now = asyncio.get_running_loop().time()
        if self.in_flight and now < self._since + self.max_defer:
            self._let_go_soon()  # a request came meanwhile: its answer (or max_defer) first
            return
        self._out, self._since = self._line.popleft(), now
        self._out.set_result(None)
