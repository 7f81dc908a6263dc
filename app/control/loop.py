"""The control loop's moving parts, started and stopped together: the reconciler, the pod
observer and one shared pod informer per tenant namespace.

Example::

    loop = ControlLoop(Reconciler(sessions, cluster, settings, bus))
    await loop.start()
    ...
    await loop.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from app.cluster.client import PODS
from app.cluster.informer import Informer
from app.cluster.objects import selector_for
from app.control.observer import PodObserver
from app.control.reconciler import Reconciler

log = logging.getLogger("qaas.control")


class ControlLoop:
    def __init__(self, reconciler: Reconciler) -> None:
        self.cluster = reconciler.cluster
        self.selector = selector_for(reconciler.settings.instance)
        self.reconciler = reconciler
        self.observer = PodObserver(self.reconciler.writer, on_pod_gone=self.reconciler.kick)
        # One shared pod informer per tenant namespace, started when a pass first visits it.
        self.reconciler.on_namespace(self.watch_namespace)
        self.informers: dict[str, Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    def kick(self) -> None:
        self.reconciler.kick()

    def watch_namespace(self, namespace: str) -> None:
        if namespace in self.informers or not self._running:
            return
        informer = Informer(
            self.cluster.resource(PODS, namespace), self.selector, self.observer.handle
        )
        self.informers[namespace] = informer
        self.observer.follow(informer)
        self._spawn(informer.run(), f"pod-informer-{namespace}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def start(self) -> None:
        self._running = True
        self._spawn(self.reconciler.run(), "reconciler")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the reconciler finish its pass and the observer its writes, then stop."""
        self._running = False
        self.reconciler.stop()
        reconciler = self._tasks[:1]  # started first
        await asyncio.wait(reconciler, timeout=grace)
        for task in self._tasks:
            task.cancel()
        if self.observer.writes:
            await asyncio.wait(list(self.observer.writes), timeout=grace)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.informers.clear()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
