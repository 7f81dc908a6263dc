"""Runs the control loop on one replica only: the one holding the control Lease.

With leader election on (``QAAS_LEADER_ELECTION``, see ``app/config.py``) every replica serves
queries, mutations and subscriptions, and competes for the Lease (``app/cluster/lease.py``).
The winner starts a fresh ``ControlLoop`` (reconciler, pod informers and observer, chain probe);
when it loses the lease, its fence closes first (no more writes to the cluster or the database,
``app/cluster/fence.py``) and then its loop is stopped. A replica that leads again later starts
a new loop. With election off (SQLite: one replica) the loop simply runs.

A mutation answered by a follower is seen by the leader's next pass (``QAAS_RESYNC_SECONDS``),
or sooner by a cross-replica kick of the event bus: ``kick`` is the one hook either way.

Hook for metrics: ``is_leader`` (a bool property, true only while this replica holds the lease
and its loop runs) and ``terms`` (how many times it has led).

Example::

    leadership = Leadership(lambda: ControlLoop(Reconciler(...)), elector)
    await leadership.start()     # one election step now: a replica alone leads at once
    leadership.is_leader
    await leadership.stop()      # stops the loop, then releases the lease
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import Cluster
from app.cluster.lease import LeaseElector
from app.config import Settings, leader_election_on, leader_identity
from app.control.loop import ControlLoop
from app.control.reconciler import Reconciler
from app.events.bus import EventBus
from app.events.foreground import Foreground

log = logging.getLogger("qaas.leader")


class Leadership:
    def __init__(
        self,
        make_loop: Callable[[], ControlLoop],
        elector: LeaseElector | None,
        on_loop: Callable[[ControlLoop], None] = lambda _: None,
    ) -> None:
        self.make_loop = make_loop
        self.elector = elector
        self.on_loop = on_loop  # told of each new loop (the app publishes it for diagnostics)
        self.control: ControlLoop | None = None  # the running loop, while leading
        self.terms = 0  # times this replica started leading
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """This replica runs the control loop (and, with election, holds the lease)."""
        if self.control is None:
            return False
        return self.elector is None or self.elector.is_leader

    def kick(self, network_id: str | None = None) -> None:
        """Ask the reconciler for a pass soon (over one network, or all); a follower has none
        (the leader's resync, or the event bus's cross-replica kick, carries the change over)."""
        if self.control is not None:
            self.control.kick(network_id)

    def problems(self, longer_than: float) -> dict[str, str]:
        """For /readyz: the loop's failing parts; a follower serves, so it has none."""
        return self.control.problems(longer_than) if self.control is not None else {}

    async def start(self) -> None:
        if self.elector is None:
            await self._lead()
            return
        leading = await self.elector.step(False, self._lead, self._follow)
        self._task = asyncio.create_task(
            self.elector.run(self._lead, self._follow, leading), name="leader-election"
        )

    async def stop(self) -> None:
        """Stop leading (the loop finishes its pass) and release the lease."""
        if self.elector is None:
            await self._follow()
            return
        self.elector.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._follow()  # in case the election task never ran

    async def _lead(self) -> None:
        loop = self.make_loop()
        self.control = loop
        self.terms += 1
        self.on_loop(loop)
        await loop.start()

    async def _follow(self) -> None:
        loop, self.control = self.control, None
        if loop is not None:
            log.info("stopping the control loop (not the leader any more)")
            await loop.stop()


def leadership_for(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    bus: EventBus,
    on_loop: Callable[[ControlLoop], None] = lambda _: None,
    foreground: Foreground | None = None,
) -> Leadership:
    """The installation's leadership as the settings say: elected on the Lease
    ``<QAAS_INSTANCE>-control`` in QaaS's namespace, or (election off) always leading. The
    control loop's work makes way for the requests ``foreground`` counts."""
    elector = None
    if leader_election_on(settings):
        elector = LeaseElector(
            cluster, f"{settings.instance}-control", leader_identity(settings),
            lease_seconds=settings.lease_seconds, renew_deadline=settings.lease_renew_deadline,
            retry_period=settings.lease_retry_period,
        )  # fmt: skip
    return Leadership(
        lambda: ControlLoop(Reconciler(sessions, cluster, settings, bus, foreground)),
        elector,
        on_loop,
    )
