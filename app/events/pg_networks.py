"""Network changes across replicas, for the PostgreSQL bus (app/events/pg_bus.py).

A network created, marked for deletion or deleted is NOTIFYed on ``qaas_networks`` inside the
writing transaction (ids only: network, tenant, sender, deleted). A replica that hears of a
network's creation or change reads its view (once per burst, and only when one of its
subscribers wants it) and publishes a ``NetworkChange``; a deletion is not read (the row is
gone): it carries the last view this replica delivered, or None (the subscriber then tells the
state it was told itself, schema/network_events.py). A network deleted once stays deleted here:
a read that started before the deletion and returns after it delivers nothing.

The catch-up after a reconnect lists every network (id, tenant, marked for deletion): a network
this replica knew that is gone is delivered as deleted; one it did not know, or whose mark for
deletion changed, is read again.

Example::

    networks = NetworkTracker(local_bus, instance)
    channel, payload = networks.announcement(change)   # NOTIFYed in the writing transaction
    networks.heard(json.loads(payload))                # on the other replica
    await networks.read(feed)                          # the views it wants, delivered
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.events.bus import InProcessBus, NetworkChange

# {"w": network, "t": tenant, "i": sender, "d": deleted}
NETWORKS = "qaas_networks"
DELETED_KEPT = 10_000  # deleted networks remembered (to drop late notifications about them)


class NetworkSnapshot(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def status(self) -> Any: ...


class NetworkSource(Protocol):
    """What the tracker reads (app/store/node_feed.py: NodeFeed)."""

    async def networks(self, network_ids: Sequence[str]) -> Sequence[NetworkSnapshot]: ...
    async def network_states(self) -> Sequence[tuple[str, str, bool]]: ...


@dataclass
class _Known:
    tenant_id: str
    deleting: bool | None  # marked for deletion (None: not known)
    stamp: int  # when it was last set (catch-up only deletes what it knew before its read)
    last: Any = None  # the last view delivered
    deleted: bool = False


class NetworkTracker:
    """The networks one replica knows of, and the ones it has to read."""

    def __init__(self, local: InProcessBus, instance: str) -> None:
        self.local, self.instance = local, instance
        self.pending: OrderedDict[str, None] = OrderedDict()  # networks to read
        self.reads = 0
        self._known: dict[str, _Known] = {}
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._clock = 0

    def announcement(self, change: NetworkChange) -> tuple[str, str]:
        note: dict[str, Any] = {"w": change.network_id, "t": change.tenant_id, "i": self.instance}
        if change.deleted:
            note["d"] = 1
        return NETWORKS, json.dumps(note, separators=(",", ":"))

    def heard(self, note: dict[str, Any]) -> bool:
        """A notification; True when a read is now pending."""
        network_id, tenant_id = note["w"], note["t"]
        if not isinstance(network_id, str) or not isinstance(tenant_id, str):
            raise TypeError("ids are strings")
        if note.get("i") == self.instance:
            return False  # ours: published here right after its commit
        if note.get("d"):
            known = self._known.get(network_id)
            last = known.last if known is not None else None
            self.deliver(NetworkChange(network_id, tenant_id, last, deleted=True))
            return False
        return self.note(network_id, tenant_id, None)

    def note(self, network_id: str, tenant_id: str, deleting: bool | None) -> bool:
        """The network changed (or may have): queue a read if a subscriber wants it."""
        known = self._known.get(network_id)
        if known is not None and known.deleted:
            return False
        if not self.local.wanted(NetworkChange(network_id, tenant_id, None)):
            # Not read: the last view is stale now (a deletion then tells what subscribers saw).
            self._remember(network_id, tenant_id, deleting, None)
            return False
        self.pending[network_id] = None
        return True

    def deliver(self, change: NetworkChange) -> None:
        known = self._known.get(change.network_id)
        if known is not None and known.deleted:
            return  # deleted already: a read that began before the deletion brings nothing
        snapshot = change.snapshot
        deleting = None if snapshot is None else snapshot.status == "DELETING"
        self._remember(change.network_id, change.tenant_id, deleting, snapshot, change.deleted)
        if change.deleted:
            self.pending.pop(change.network_id, None)
        self.local.publish(change)

    async def read(self, source: NetworkSource) -> None:
        """Read the pending networks and deliver them (on failure they stay pending)."""
        ids = list(self.pending)
        views = await source.networks(ids)
        self.reads += 1
        for network_id in ids:
            self.pending.pop(network_id, None)
        for view in views:  # a network not found was deleted: its own notification says so
            self.deliver(NetworkChange(view.id, view.tenant_id, view))

    async def catch_up(self, source: NetworkSource) -> None:
        """After a gap: deliver the known networks that are gone, read the new or changed."""
        before = self._clock
        present: set[str] = set()
        for network_id, tenant_id, deleting in await source.network_states():
            present.add(network_id)
            known = self._known.get(network_id)
            if known is None or known.deleting != deleting:
                self.note(network_id, tenant_id, deleting)
        for network_id, known in list(self._known.items()):
            if not known.deleted and known.stamp <= before and network_id not in present:
                self.deliver(NetworkChange(network_id, known.tenant_id, known.last, deleted=True))

    def _remember(
        self,
        network_id: str,
        tenant_id: str,
        deleting: bool | None,
        last: Any,
        deleted: bool = False,
    ) -> None:
        self._clock += 1
        self._known[network_id] = _Known(tenant_id, deleting, self._clock, last, deleted)
        if deleted:
            self._deleted[network_id] = None
            if len(self._deleted) > DELETED_KEPT:
                oldest, _ = self._deleted.popitem(last=False)
                self._known.pop(oldest, None)
