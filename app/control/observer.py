"""The pod observer: turns the shared pod informer's events into node state and bus events.

For each event it finds the node the pod belongs to (by label, through the informer's index),
takes the pod that currently speaks for that node, and writes what changed to the node's row.
Only a real change is written and published; duplicates and no-op updates are dropped here.

What was last recorded for each node is remembered (``recorded``): an event whose observation
equals it costs no SQL at all. A relist (start-up, 410 Gone) first loads what is recorded for
every node of the namespace in one statement (``prime``), so a relist of 10,000 settled pods
reads once and writes nothing. Only the observer writes a node's pod facts, so the memory can
only be behind the row when a write failed, and a failed write is not remembered. It holds only
nodes that have a pod: "no pod" is not remembered (after a node's last pod is deleted, its next
event is a new pod anyway), so a deleted node, whose pods all go, leaves nothing behind, however
many come and go in a leader's life.

Example::

    observer = PodObserver(NodeWriter(sessions, bus), on_pod_gone=reconciler.kick)
    informer = Informer(cluster.resource(PODS, namespace), selector, observer.handle,
                        index_label=NODE_ID, on_relist=observer.prime)
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
from app.store import desired
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
        self.recorded: dict[str, PodObservation] = {}  # by node id: what its row says

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
        current = current_pod(self._pods_of(informer, node_id))
        observation = observe(current) if current else NO_POD
        if self.recorded.get(node_id) == observation:
            return  # the row says this already (a relist, a no-op update): nothing to do
        # Shielded: stopping the informer must not cut a database write in half (a cancelled
        # SQLite transaction keeps its lock until the connection is collected).
        write = asyncio.ensure_future(self.record(node_id, observation))
        self.writes.add(write)
        write.add_done_callback(self.writes.discard)
        await asyncio.shield(write)

    @staticmethod
    def _pods_of(informer: Informer, node_id: str) -> list[dict[str, Any]]:
        if informer.cache.index_label == NODE_ID:
            return informer.cache.having(node_id)
        return [
            p
            for p in informer.cache.values()
            if (p["metadata"].get("labels") or {}).get(NODE_ID) == node_id
        ]

    async def prime(self, pods: list[dict[str, Any]]) -> None:
        """Before a relist hands ``pods`` over: load what every node of their namespace has
        recorded, in one statement, so that pods found as recorded cost nothing."""
        namespaces = {p["metadata"]["namespace"] for p in pods}
        async with self.writer.sessions() as session:
            for namespace in namespaces:
                recorded = await desired.pod_facts_in_namespace(session, namespace)
                for node_id, facts in recorded.items():
                    if (observation := PodObservation(*facts)) != NO_POD:
                        self.recorded[node_id] = observation

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
        self.recorded.pop(node_id, None)  # unknown until this write is done
        await self.writer.write(node_id, observed)
        if observation != NO_POD:
            self.recorded[node_id] = observation
