"""The pod observer: turns the shared pod informer's events into node state and bus events.

For each event it finds the node the pod belongs to (by label), takes the pod that currently
speaks for that node, and writes what changed to the node's row. Only a real change is written
and published; duplicates and no-op updates are dropped here.

Example::

    observer = PodObserver(NodeWriter(sessions, bus), on_pod_gone=reconciler.kick)
    informer = Informer(cluster.resource(PODS, namespace), selector, observer.handle)
    observer.follow(informer)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.cluster.informer import Informer
from app.cluster.objects import NODE_ID
from app.cluster.pods import NO_POD, PodObservation, current_pod, observe
from app.control.node_writer import NodeWriter
from app.store.models import Node

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
    def __init__(self, writer: NodeWriter, on_pod_gone: Callable[[], None] = lambda: None) -> None:
        self.writer = writer
        self.on_pod_gone = on_pod_gone
        self.informers: dict[str, Informer] = {}  # by namespace
        self.writes: set[asyncio.Future[None]] = set()  # in flight, awaited on shutdown

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
        async def observed(_: AsyncSession, node: Node) -> bool:
            changed = False
            for source, column in _FIELDS.items():
                value = getattr(observation, source)
                if getattr(node, column) != value:
                    setattr(node, column, value)
                    changed = True
            return changed

        # A node already deleted has no row: its pods are on their way out.
        await self.writer.write(node_id, observed)
