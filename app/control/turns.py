"""Long work that gives the event loop back every few milliseconds.

The API's answers, the pod watch and the reconciler share one event loop. A full pass over
10,000 settled nodes made only a handful of awaits that suspend (its SQL runs inline on the
loop, app/store/sqlite_loop.py; a settled node needs no API call), so it held the loop for
572 ms at a time (bench/reconcile_scale.py, lists from memory, in CPU time): each resync froze
the API that long. A pass now calls ``Turns.take`` between units of its work (nodes, chunks of
rows and of listed objects); once a slice (5 ms) has passed since this object last gave a turn,
that call lets everything ready run before the pass goes on. With the lists read in pages
(app/cluster/client.py) and the collector paused (``collector_paused``), the longest hold of
that pass was 21 ms. Each call is also a unit's turn in the ``Foreground``
(app/events/foreground.py): while the API answers requests, the pass waits for a quiet moment.

Example::

    turns = Turns()
    for node in nodes:
        await turns.take()
        compare(node)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator

from app.events.foreground import Foreground

SLICE_SECONDS = 0.005


class Turns:
    """Gives the event loop a turn once ``slice_seconds`` of work have passed since the last,
    and waits for its turn while the API answers (``foreground``)."""

    def __init__(
        self, slice_seconds: float = SLICE_SECONDS, foreground: Foreground | None = None
    ) -> None:
        self.slice_seconds = slice_seconds
        self.foreground = foreground or Foreground()
        self.given = 0  # turns given (for tests)
        self._since = time.perf_counter()

    async def take(self) -> None:
        """Wait for a quiet moment while requests are answered; let others run if this slice is
        used up; otherwise return at once (no suspension)."""
        if await self.foreground.turn():
            self.given += 1
            self._since = time.perf_counter()
        elif time.perf_counter() - self._since >= self.slice_seconds:
            await asyncio.sleep(0)
            self.given += 1
            self._since = time.perf_counter()


@contextlib.contextmanager
def collector_paused(paused: bool = True) -> Iterator[None]:
    """The cyclic garbage collector off for the block (a full pass), as it was after; with
    ``paused`` false the block runs as it is.

    A full pass at 10,000 nodes holds millions of decoded objects for a while; they survive
    the young generations' collections, which then walk them again and again without finding
    garbage (with the server's thresholds, collections of 50 to 240 ms in one pass, each a
    stall of the loop). What a pass makes is freed by reference counting when it ends; cyclic
    garbage made meanwhile (by the pass or the API's answers) waits for the first collection
    after it, which walks everything still alive that was made during the pass.

    Only full passes pause it (the reconciler passes ``only is None``). Passes over kicked
    networks follow each other back to back under a stream of mutations: with the collector
    off for each, it was on only between two of them, and the one collection there walked
    everything made by seconds of answers: a stall of 243 ms (bench/mutations.py, sampled at
    the end of such a pass). Those passes are small; the collector runs through them."""
    if not paused or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
