"""The event bus: node and network changes published once, delivered to every interested
subscriber.

Each subscriber has a bounded mailbox keyed by node (and by network, for a subscriber that asked
for network changes too): a slow subscriber that falls behind gets the LATEST state of each node
and network, never an ever-growing backlog. A key's newer change moves to the end of the queue,
so a subscriber never sees one object's change before an earlier-published change of another
(a network's deletion comes after its last node's removal). Publishing is O(subscribers)
dictionary writes and never blocks on a subscriber.

This is the in-process bus (one replica). The PostgreSQL bus for several replicas
(``app/events/pg_bus.py``) implements the same protocol and delivers through one of these:
``publish`` (a ``NodeChange`` or a ``NetworkChange``), ``subscribe`` (``networks=True`` asks for
network changes as well as node changes), and ``announcement``, what a writer sends inside its
writing transaction so that other replicas hear of the change exactly when it commits (None
here: nobody else is listening).

Example::

    bus = InProcessBus()
    async with bus.subscribe(network_id="n1") as mailbox:
        bus.publish(change)                  # from the pod watch or the reconciler
        change = await mailbox.get()
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass(frozen=True)
class NetworkChange:
    """A network created, marked for deletion, or deleted (its nodes' changes are
    ``NodeChange``s). ``snapshot`` is its last state (app.store.read_models.NetworkView); for a
    deletion heard from another replica, the last state this replica delivered, or None."""

    network_id: str
    tenant_id: str
    snapshot: Any
    deleted: bool = False
    renders: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        return "network:" + self.network_id


Change = NodeChange | NetworkChange


def _key(change: Change) -> str:
    return change.key if isinstance(change, NetworkChange) else change.node_id


class Mailbox:
    """One subscriber's bounded, per-node-coalescing queue. Thousands of them sit idle at
    once, so it holds little: slots, a plain dict (insertion-ordered) and a future made only
    while its subscriber waits (an asyncio.Event would hold a deque of its own)."""

    __slots__ = (
        "_pending",
        "_waiter",
        "dropped",
        "limit",
        "network_id",
        "networks",
        "node_id",
        "tenant_id",
    )  # fmt: skip

    def __init__(
        self,
        tenant_id: str | None,
        network_id: str | None,
        node_id: str | None,
        limit: int,
        networks: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.networks = networks  # network changes too, not only node changes
        self.network_id = network_id
        self.node_id = node_id
        self.limit = limit
        self._pending: dict[str, Change] = {}
        self._waiter: asyncio.Future[None] | None = None  # only while get() waits
        self.dropped = 0  # superseded changes (a newer state of the same node replaced them)

    def wants(self, change: Change) -> bool:
        if self.tenant_id is not None and change.tenant_id != self.tenant_id:
            return False
        if isinstance(change, NetworkChange):
            if not self.networks or self.node_id is not None:
                return False
        elif self.node_id is not None:
            return change.node_id == self.node_id
        return self.network_id is None or change.network_id == self.network_id

    def offer(self, change: Change) -> None:
        key = _key(change)
        if key in self._pending:
            self.dropped += 1
            COALESCED.inc()
            self._pending.pop(key)
        elif len(self._pending) >= self.limit:
            del self._pending[next(iter(self._pending))]  # the oldest: memory stays bounded
            self.dropped += 1
            COALESCED.inc()
        self._pending[key] = change
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Change:
        """The oldest pending change, once there is one (one subscriber reads a mailbox)."""
        while not self._pending:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._pending.pop(next(iter(self._pending)))

    def __len__(self) -> int:
        return len(self._pending)


class EventBus(Protocol):
    def publish(self, change: Change) -> None: ...

    def announcement(self, change: Change) -> tuple[str, str] | None:
        """(channel, payload) to NOTIFY within the transaction that makes ``change``, or None."""
        ...

    def subscribe(
        self,
        network_id: str | None = None,
        node_id: str | None = None,
        tenant_id: str | None = None,
        *,
        networks: bool = False,
    ) -> contextlib.AbstractAsyncContextManager[Mailbox]: ...


class InProcessBus:
    """Fan-out within one process."""

    def __init__(self, mailbox_limit: int = 1000) -> None:
        self.mailbox_limit = mailbox_limit
        self._mailboxes: set[Mailbox] = set()

    @property
    def subscribers(self) -> int:
        return len(self._mailboxes)

    def wanted(self, change: Change) -> bool:
        """Whether any subscriber wants this change."""
        return any(mailbox.wants(change) for mailbox in self._mailboxes)

    def announcement(self, change: Change) -> tuple[str, str] | None:
        return None

    def publish(self, change: Change) -> None:
        for mailbox in self._mailboxes:
            if mailbox.wants(change):
                mailbox.offer(change)

    def subscribe(
        self,
        network_id: str | None = None,
        node_id: str | None = None,
        tenant_id: str | None = None,
        *,
        networks: bool = False,
    ) -> _Subscription:
        mailbox = Mailbox(tenant_id, network_id, node_id, self.mailbox_limit, networks)
        return _Subscription(self._mailboxes, mailbox)


class _Subscription:
    """``async with bus.subscribe(...) as mailbox``: the mailbox is among the bus's while the
    block runs (a class, not a generator-based context manager: no suspended generator frame
    per idle subscriber)."""

    __slots__ = ("_mailbox", "_mailboxes")

    def __init__(self, mailboxes: set[Mailbox], mailbox: Mailbox) -> None:
        self._mailboxes = mailboxes
        self._mailbox = mailbox

    async def __aenter__(self) -> Mailbox:
        self._mailboxes.add(self._mailbox)
        SUBSCRIBERS.inc()
        return self._mailbox

    async def __aexit__(self, *_: object) -> None:
        self._mailboxes.discard(self._mailbox)
        SUBSCRIBERS.dec()
