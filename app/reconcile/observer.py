"""The pod observer: turns the shared pod informer's events into node state and bus events.

For each event it finds the node the pod belongs to (by label), takes the pod that currently
speaks for that node, and writes what changed to the node's row. Only a real change is written
and published; duplicates and no-op updates are dropped here.

Example::

    observer = PodObserver(sessions, bus, on_pod_gone=reconciler.kick)
    informer = Informer(cluster.resource(PODS, namespace), selector, observer.handle)
    observer.follow(informer)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Network, Node
from app.events.bus import EventBus, NodeChange
from app.k8s.informer import Informer
from app.k8s.objects import NODE_ID
from app.k8s.pods import NO_POD, PodObservation, current_pod, observe
from app.reconcile.progress import refresh_status
from app.views import NodeView

log = logging.getLogger("qaas.observer")

_FIELDS = {
    "pod_name": "pod_name",
    "phase": "pod_phase",
    "ready": "pod_ready",
    "restart_count": "restart_count",
    "reason": "pod_reason",
    "message": "pod_message",
    "pod_ip": "pod_ip",
    "started_at": "pod_started_at",
}


class PodObserver:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: EventBus,
        on_pod_gone: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.on_pod_gone = on_pod_gone
        self.informers: dict[str, Informer] = {}  # by namespace
        self.writes: set[asyncio.Future[None]] = set()  # in flight, awaited on shutdown
        self.published = 0

    def follow(self, informer: Informer) -> None:
        """Take events from ``informer`` (one per namespace; its cache answers lookups)."""
        self.informers[informer.resource.namespace] = informer

    async def handle(self, kind: str, pod: dict[str, Any]) -> None:
        node_id = (pod["metadata"].get("labels") or {}).get(NODE_ID)
        if not node_id:
            return
        if kind == "DELETED":
            self.on_pod_gone()  # maybe deleted behind our back: let the reconciler look
        informer = self.informers[pod["metadata"]["namespace"]]
        pods = [
            p
            for p in informer.cache.values()
            if (p["metadata"].get("labels") or {}).get(NODE_ID) == node_id
        ]
        current = current_pod(pods)
        # Shielded: stopping the informer must not cut a database write in half (a cancelled
        # SQLite transaction keeps its lock until the connection is collected).
        write = asyncio.ensure_future(self.record(node_id, observe(current) if current else NO_POD))
        self.writes.add(write)
        write.add_done_callback(self.writes.discard)
        await asyncio.shield(write)

    async def record(self, node_id: str, observation: PodObservation) -> None:
        async with self.sessions.begin() as session:
            node = await session.get(Node, node_id)
            if node is None:
                return  # deleted already; its pods are on their way out
            changed = False
            for source, column in _FIELDS.items():
                value = getattr(observation, source)
                if getattr(node, column) != value:
                    setattr(node, column, value)
                    changed = True
            if not changed:
                return
            node.revision += 1
            await refresh_status(session, node)
            network = await session.get(Network, node.network_id)
            assert network is not None
            view = NodeView.of(node, network)
        self.published += 1
        self.bus.publish(NodeChange(view.id, view.network_id, view.tenant_id, view))
