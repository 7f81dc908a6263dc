"""The event bus: node changes published once, delivered to every interested subscriber.

Each subscriber has a bounded mailbox keyed by node: a slow subscriber that falls behind gets
the LATEST state of each node, never an ever-growing backlog. Publishing is O(subscribers)
dictionary writes and never blocks on a subscriber.

This is the in-process bus (one replica). The PostgreSQL bus for several replicas
(``app/events/pg_bus.py``) implements the same protocol and delivers through one of these.
``announcement`` is what a writer sends inside its writing transaction so that other replicas
hear of the change exactly when it commits (None here: nobody else is listening).

Example::

    bus = InProcessBus()
    async with bus.subscribe(network_id="n1") as mailbox:
        bus.publish(change)                  # from the pod watch or the reconciler
        change = await mailbox.get()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.metrics import COALESCED, SUBSCRIBERS


@dataclass(frozen=True)
class NodeChange:
    """A node's full new state, built once per change and shared by every subscriber.

    ``renders`` is where subscribers keep what they derive from the change once for all of
    them (schema/fanout.py: the rendered selection per group); it goes away with the change."""

    node_id: str
    network_id: str
    tenant_id: str
    # The read model (app.store.read_models.NodeView), immutable. For a deleted node: its last
    # state, or None when the deletion was heard from another replica that alone had it.
    snapshot: Any
    deleted: bool = False
    renders: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


class Mailbox:
    """One subscriber's bounded, per-node-coalescing queue."""

    def __init__(
        self, tenant_id: str | None, network_id: str | None, node_id: str | None, limit: int
    ) -> None:
        self.tenant_id = tenant_id
        self.network_id = network_id
        self.node_id = node_id
        self.limit = limit
        self._pending: OrderedDict[str, NodeChange] = OrderedDict()
        self._ready = asyncio.Event()
        self.dropped = 0  # superseded changes (a newer state of the same node replaced them)

    def wants(self, change: NodeChange) -> bool:
        if self.tenant_id is not None and change.tenant_id != self.tenant_id:
            return False
        if self.node_id is not None:
            return change.node_id == self.node_id
        return self.network_id is None or change.network_id == self.network_id

    def offer(self, change: NodeChange) -> None:
        if change.node_id in self._pending:
            self.dropped += 1
            COALESCED.inc()
            self._pending.pop(change.node_id)
        elif len(self._pending) >= self.limit:
            self._pending.popitem(last=False)  # the oldest node's state: memory stays bounded
            self.dropped += 1
            COALESCED.inc()
        self._pending[change.node_id] = change
        self._ready.set()

    async def get(self) -> NodeChange:
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        _, change = self._pending.popitem(last=False)
        return change

    def __len__(self) -> int:
        return len(self._pending)


class EventBus(Protocol):
    def publish(self, change: NodeChange) -> None: ...

    def announcement(self, change: NodeChange) -> tuple[str, str] | None:
        """(channel, payload) to NOTIFY within the transaction that makes ``change``, or None."""
        ...

    def subscribe(
        self,
        network_id: str | None = None,
        node_id: str | None = None,
        tenant_id: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Mailbox]: ...


class InProcessBus:
    """Fan-out within one process."""

    def __init__(self, mailbox_limit: int = 1000) -> None:
        self.mailbox_limit = mailbox_limit
        self._mailboxes: set[Mailbox] = set()

    @property
    def subscribers(self) -> int:
        return len(self._mailboxes)

    def wanted(self, change: NodeChange) -> bool:
        """Whether any subscriber wants this change."""
        return any(mailbox.wants(change) for mailbox in self._mailboxes)

    def announcement(self, change: NodeChange) -> tuple[str, str] | None:
        return None

    def publish(self, change: NodeChange) -> None:
        for mailbox in self._mailboxes:
            if mailbox.wants(change):
                mailbox.offer(change)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        network_id: str | None = None,
        node_id: str | None = None,
        tenant_id: str | None = None,
    ) -> AsyncIterator[Mailbox]:
        mailbox = Mailbox(tenant_id, network_id, node_id, self.mailbox_limit)
        self._mailboxes.add(mailbox)
        SUBSCRIBERS.inc()
        try:
            yield mailbox
        finally:
            self._mailboxes.discard(mailbox)
            SUBSCRIBERS.dec()
