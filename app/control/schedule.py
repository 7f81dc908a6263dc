"""When the reconciler runs its next pass, and what that pass covers.

A full pass visits every tenant: it prepares namespaces, lists every object QaaS owns, walks
every node and deletes orphans. It runs at start, every ``resync_seconds``, after a failed pass
(after the reconciler's back-off, unless kicked sooner), and on a kick that names no network (a
pod gone, another replica's wake-up call that names none, a new leader).

A mutation changes one network, so its kick names it: the next pass covers the named networks
only (their rows, and their objects listed by the network's label). Such a pass costs what the
network costs, not what the installation costs: a full pass for every ``networkCreate`` lists
and walks every network, on the event loop that also serves the answers. The full pass still
follows on its period, so whatever a network pass does not look at (orphans, other networks'
drift) is converged as before. Kicks that arrive while a pass runs are gathered for the next
one; more than ``MOST_NETWORKS`` named networks, or any kick that names none, make the next
pass a full one.

Example::

    schedule = PassSchedule(resync_seconds=10)
    schedule.kick("network-id")            # a mutation
    scope = schedule.take()                # {"network-id"}: None would mean a full pass
    await schedule.wait()                  # until kicked, or until the full pass is due
"""

from __future__ import annotations

import asyncio
import time

MOST_NETWORKS = 50  # named networks one pass takes (their ids go into one label selector)


class PassSchedule:
    def __init__(self, resync_seconds: float) -> None:
        self.resync_seconds = resync_seconds
        self._wake = asyncio.Event()
        self._wake.set()  # the first pass runs at once
        self._full_due = 0.0  # time.monotonic() when the next full pass is due
        self._full = True  # a kick named no network
        self._networks: set[str] = set()

    def kick(self, network_id: str | None = None) -> None:
        """Ask for a pass soon: over ``network_id`` only, or (None) over everything."""
        if network_id is None:
            self._full = True
        else:
            self._networks.add(network_id)
        self._wake.set()

    def take(self) -> set[str] | None:
        """What the pass to run now covers: None for all, else the networks kicked since the
        last pass (empty: nothing asked for one). What it returns is no longer pending."""
        self._wake.clear()
        full = self._full or len(self._networks) > MOST_NETWORKS
        if full or time.monotonic() >= self._full_due:
            self._full, self._networks = False, set()
            return None
        networks, self._networks = self._networks, set()
        return networks

    def full_pass_in(self, seconds: float) -> None:
        """Make the next full pass due ``seconds`` from now (after a pass: the resync period
        or, after a failure, the back-off)."""
        self._full_due = time.monotonic() + seconds

    async def wait(self) -> None:
        """Until a kick (or ``wake``), or until the full pass is due."""
        timeout = self._full_due - time.monotonic()
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        except TimeoutError:
            pass

    def wake(self) -> None:
        """Return from ``wait`` now (to stop)."""
        self._wake.set()
