"""The control loop's moving parts, started and stopped together: the reconciler, the pod
observer, one shared pod informer per tenant namespace and (``QAAS_CHAIN_PROBE=on``) the chain
probe. Each runs supervised: if its run()
ever ends with an error it is restarted after a backoff with jitter, and ``problems()`` names
the parts that have been failing for longer than a threshold (for /readyz).

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
import random
import time
from typing import Protocol

from app.chain.probe import ChainProbe
from app.chain.rpc import RpcClient
from app.cluster.client import PODS
from app.cluster.informer import Informer
from app.cluster.objects import NODE_ID, selector_for
from app.control.chain import ChainRecorder
from app.control.observer import PodObserver
from app.control.reconciler import Reconciler
from app.metrics import set_leader

log = logging.getLogger("qaas.control")


class Supervised(Protocol):
    """Background work that retries its own failures and says since when it fails."""

    failing_since: float | None
    last_error: str | None

    async def run(self) -> None: ...


class ControlLoop:
    def __init__(self, reconciler: Reconciler, max_restart_delay: float = 30.0) -> None:
        self.cluster = reconciler.cluster
        self.selector = selector_for(reconciler.settings.instance)
        self.reconciler = reconciler
        self.observer = PodObserver(self.reconciler.writer, on_pod_gone=self.reconciler.kick)
        # One shared pod informer per tenant namespace, started when a pass first visits it.
        self.reconciler.on_namespace(self.watch_namespace, self.keep_namespaces)
        self.informers: dict[str, Informer] = {}
        self.chain: ChainProbe | None = None
        self.recorder: ChainRecorder | None = None
        if reconciler.chain_required:
            settings = reconciler.settings
            self.recorder = ChainRecorder(reconciler.sessions, reconciler.writer, settings)
            rpc = RpcClient(settings.chain_probe_timeout, settings.chain_probe_concurrency)
            self.chain = self.recorder.probe(rpc)
        self.max_restart_delay = max_restart_delay
        self.restarts = 0  # times a component's run() ended with an error and was restarted
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    def kick(self, network_id: str | None = None) -> None:
        self.reconciler.kick(network_id)

    def watch_namespace(self, namespace: str) -> None:
        if namespace in self.informers or not self._running:
            return
        informer = Informer(
            self.cluster.resource(PODS, namespace), self.selector, self.observer.handle,
            index_label=NODE_ID, on_relist=self.observer.prime,
        )  # fmt: skip
        self.informers[namespace] = informer
        self.observer.follow(informer)
        self._spawn(informer, f"pod-informer {namespace}")

    def keep_namespaces(self, namespaces: set[str]) -> None:
        """Stop the pod informers of namespaces no tenant has any more (deleted tenants): a
        watch on a namespace that is gone would fail for ever."""
        for namespace in set(self.informers) - namespaces:
            del self.informers[namespace]
            self.observer.informers.pop(namespace, None)
            for task in self._tasks:
                if task.get_name() == f"pod-informer {namespace}":
                    task.cancel()

    def _spawn(self, component: Supervised, name: str) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(component, name), name=name))

    async def _supervise(self, component: Supervised, name: str) -> None:
        """Run ``component`` until it returns on purpose; restart it after any error."""
        failures = 0
        while self._running:
            try:
                await component.run()
                return
            except Exception as error:
                failures += 1
                self.restarts += 1
                component.last_error = f"{name} stopped: {error!r}"
                if component.failing_since is None:
                    component.failing_since = time.monotonic()
                delay = min(self.max_restart_delay, 0.5 * 2**failures)
                delay *= random.uniform(0.5, 1.0)
                log.error("%s stopped unexpectedly; restarting in %.1fs", name, delay,
                          exc_info=True)  # fmt: skip
                await asyncio.sleep(delay)

    def problems(self, longer_than: float) -> dict[str, str]:
        """The components failing for longer than ``longer_than`` seconds, with why."""
        now = time.monotonic()
        components: list[tuple[str, Supervised]] = [("reconciler", self.reconciler)]
        components += [(f"pod-informer {ns}", inf) for ns, inf in sorted(self.informers.items())]
        if self.chain is not None:
            components.append(("chain-probe", self.chain))
        found = {}
        for name, component in components:
            since = component.failing_since
            if since is not None and now - since > longer_than:
                found[name] = f"failing for {now - since:.0f}s: {component.last_error}"
        return found

    async def start(self) -> None:
        self._running = True
        set_leader(True)
        self._spawn(self.reconciler, "reconciler")
        if self.chain is not None:
            self._spawn(self.chain, "chain-probe")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the reconciler finish its pass and the observer its writes, then stop."""
        self._running = False
        set_leader(False)
        self.reconciler.stop()
        if self.chain is not None:
            self.chain.stop()
        if not self._tasks:
            return  # never started, or stopped already
        reconciler = self._tasks[:1]  # started first
        await asyncio.wait(reconciler, timeout=grace)
        for task in self._tasks:
            task.cancel()
        writes = list(self.observer.writes) + list(self.recorder.pending if self.recorder else ())
        if writes:
            await asyncio.wait(writes, timeout=grace)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.informers.clear()
        if self.chain is not None:
            await self.chain.rpc.close()
