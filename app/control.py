"""The control loop's moving parts, started and stopped together: the shared pod informer, the
pod observer and the reconciler.

Example::

    loop = ControlLoop(sessions, cluster, settings, bus)
    await loop.start()
    ...
    await loop.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.bus import EventBus
from app.k8s.client import PODS, Cluster
from app.k8s.informer import Informer
from app.k8s.objects import selector_for
from app.reconcile.observer import PodObserver
from app.reconcile.reconciler import Reconciler

log = logging.getLogger("qaas.control")


class ControlLoop:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cluster: Cluster,
        settings: Settings,
        bus: EventBus,
    ) -> None:
        self.reconciler = Reconciler(sessions, cluster, settings, bus)
        self.observer = PodObserver(sessions, bus, on_pod_gone=self.reconciler.kick)
        self.informer = Informer(
            cluster.resource(PODS), selector_for(settings.instance), self.observer.handle
        )
        self.observer.informer = self.informer
        self._tasks: list[asyncio.Task[None]] = []

    def kick(self) -> None:
        self.reconciler.kick()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.informer.run(), name="pod-informer"),
            asyncio.create_task(self.reconciler.run(), name="reconciler"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
