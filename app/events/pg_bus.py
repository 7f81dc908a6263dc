"""The event bus across replicas: PostgreSQL LISTEN/NOTIFY (one listening connection per process).

A writer NOTIFYs inside its writing transaction (``announcement``: ids and the revision, never
the node itself, so far below PostgreSQL's 8000-byte payload limit); PostgreSQL delivers it to
every listening replica when, and only if, the transaction commits, in commit order. The writing
replica publishes its snapshot locally right after the commit (``publish``) and never reads its
own change: a notification names its sender, and a replica drops its own.

Each replica turns notifications into ``NodeChange``s by reading the nodes, once per change for
all of its subscribers: notified ids wait in one ordered set (a burst of changes of a node is
one read, of its latest state) and one reader takes them in batches. A change no subscriber of
this replica wants is not read at all (a new subscriber reads its own snapshot first). A
deletion is not read (the row is gone): its notification carries the ids, and the change has
``deleted=True`` with the last state this replica delivered, or None.

Per node, a subscriber sees strictly increasing revisions, and the latest state wins.

Network changes (created, marked for deletion, deleted) cross the same way on a channel of their
own (app/events/pg_networks.py): read when wanted (before the nodes heard in the same burst, so a
network's creation comes before its nodes' changes), a deletion delivered with the last view.

If the listening connection drops (or stops answering the heartbeat) the bus reconnects
(app/events/pg_listener.py, which also says when it has been down too long), then catches up: it
reads every node's revision in one statement and reads the nodes whose revision is newer than
what it delivered; a node it knew that is gone is delivered as deleted (and then a network it
knew that is gone). So a subscriber never misses a final state. A reconnect also wakes the local
reconciler (a kick may have been missed).

A token revoked or deleted (by ``tokenRevoke`` on any replica, ``qaas token revoke`` or ``qaas
tenant delete``) is NOTIFYed in that transaction on ``TOKENS``; every replica, the sender
included, runs its ``on_token_end`` handlers: it forgets what it remembered of the token and
ends its open WebSockets. After a gap, the bus runs its ``on_tokens_unheard`` handlers: every
remembered token is read again and every open WebSocket's token checked at once.

``kick`` runs this replica's ``on_kick`` handlers (its reconciler's wake-up call) and NOTIFYs
the wake-up channel: every other replica runs its own (the sender ignores its own NOTIFY). A
kick may name the network a mutation changed; the NOTIFY carries the names of the networks
kicked since the last one (up to ``KICKED_MOST``, else none: a pass over everything).

Example::

    bus = PostgresBus(settings.database_url, NodeFeed(sessions))
    await bus.start()
    bus.on_kick.append(control.kick)
    async with bus.subscribe(network_id="n1") as mailbox:
        change = await mailbox.get()
    await bus.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.events.bus import Change, InProcessBus, Mailbox, NetworkChange, NodeChange
from app.events.pg_listener import Listener
from app.events.pg_networks import NETWORKS, NetworkSource, NetworkTracker

log = logging.getLogger("qaas.events")

# Node changes: {"n": node, "w": network, "t": tenant, "r": revision, "i": sender, "d": deleted}
NODES = "qaas_nodes"
KICK = "qaas_kick"  # wake the reconciler: "<sender's instance id>[ <network id>...]"
TOKENS = "qaas_tokens"  # a token ended: "revoked <token id>" or "deleted <token id>"
KICKED_MOST = 50  # network ids one wake-up call names (more: it names none, a full pass)
DELETED_KEPT = 10_000  # deleted nodes remembered (to drop late notifications about them)


class Snapshot(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def network_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def revision(self) -> int: ...


class NodeSource(NetworkSource, Protocol):
    """What the bus reads (app/store/node_feed.py: NodeFeed)."""

    async def views(self, node_ids: Sequence[str]) -> Sequence[Snapshot]: ...
    async def revisions(self) -> Sequence[tuple[str, str, str, int]]: ...
    async def notify(self, channel: str, payload: str) -> None: ...


@dataclass
class _Known:
    """The newest revision of a node this replica delivered (or skipped: nobody wanted it)."""

    revision: int
    network_id: str
    tenant_id: str
    stamp: int  # when it was last set (catch-up only deletes what it knew before its read)
    last: Any = None  # the last snapshot delivered
    deleted: bool = False


class PostgresBus:
    def __init__(
        self,
        dsn: str,
        source: NodeSource,
        *,
        mailbox_limit: int = 1000,
        batch: int = 500,
        heartbeat_seconds: float = 5.0,
        retry_first_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self.source, self.batch = source, batch
        # The reader's backoff after a failed read is the listener's after a failed connection.
        self.retry_first_seconds, self.retry_max_seconds = retry_first_seconds, retry_max_seconds
        self.listener = Listener(
            dsn, (NODES, KICK, NETWORKS, TOKENS), self._heard, self._caught_up,
            heartbeat_seconds=heartbeat_seconds, retry_first_seconds=retry_first_seconds,
            retry_max_seconds=retry_max_seconds,
        )  # fmt: skip
        self.connected = self.listener.connected  # set while LISTENing and caught up
        self.local = InProcessBus(mailbox_limit)
        self.instance = uuid.uuid4().hex
        self.on_kick: list[Callable[[str | None], None]] = []
        # Told of every token revoked or deleted, by any replica or the CLI: (id, deleted);
        # and, after a reconnect, that some may have gone unheard.
        self.on_token_end: list[Callable[[str, bool], None]] = []
        self.on_tokens_unheard: list[Callable[[], Awaitable[None]]] = []
        # Counters, for tests and benchmarks.
        self.reads = 0  # node reads (each one for a batch of changes)
        self.notifications = 0
        self._known: dict[str, _Known] = {}
        self.networks = NetworkTracker(self.local, self.instance)
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._clock = 0
        self._pending: OrderedDict[str, int] = OrderedDict()  # node -> newest revision heard
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._kicking: asyncio.Task[None] | None = None
        # Kicks not sent yet: the networks they named, None if one named none (empty: no kick).
        self._kicked: set[str] | None = set()

    # -- the EventBus protocol ------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return self.local.subscribers

    def subscribe(
        self,
        network_id: str | None = None,
        node_id: str | None = None,
        tenant_id: str | None = None,
        *,
        networks: bool = False,
    ) -> contextlib.AbstractAsyncContextManager[Mailbox]:
        return self.local.subscribe(network_id, node_id, tenant_id, networks=networks)

    def announcement(self, change: Change) -> tuple[str, str] | None:
        if isinstance(change, NetworkChange):
            return self.networks.announcement(change)
        note: dict[str, Any] = {"n": change.node_id, "w": change.network_id, "t": change.tenant_id,
                                "r": change.snapshot.revision, "i": self.instance}  # fmt: skip
        if change.deleted:
            note["d"] = 1
        return NODES, json.dumps(note, separators=(",", ":"))

    def publish(self, change: Change) -> None:
        """A change this replica committed (its own notification is dropped, unread)."""
        if isinstance(change, NodeChange):
            self._deliver(change, change.snapshot.revision)
        else:
            self.networks.deliver(change)

    # -- the reconciler's wake-up call -----------------------------------------------------------

    def kick(self, network_id: str | None = None) -> None:
        """Wake this replica's reconciler now and every other one's (their NOTIFYs coalesced),
        for a pass over ``network_id`` or, with None, over everything."""
        for kick in self.on_kick:
            kick(network_id)
        if network_id is None or self._kicked is None:
            self._kicked = None
        else:
            self._kicked.add(network_id)
        if self._kicking is None or self._kicking.done():  # else the sender takes it next
            self._kicking = asyncio.get_running_loop().create_task(self._send_kicks())

    async def _send_kicks(self) -> None:
        while self._kicked != set():  # kicks came while the last call was being sent
            networks, self._kicked = self._kicked, set()
            named = sorted(networks) if networks and len(networks) <= KICKED_MOST else []
            payload = " ".join([self.instance, *named])
            try:
                await self.source.notify(KICK, payload)
            except Exception as error:  # the resync timer covers a lost kick
                log.warning("cannot send the reconciler's wake-up call: %s", error)

    # -- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (in the background: a database not there yet is retried)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self.listener.run(), name="event-bus-listener"),
                           loop.create_task(self._read(), name="event-bus-reader")]  # fmt: skip

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._kicking] if self._kicking else [])]
        self._tasks, self._kicking = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def reconnects(self) -> int:
        return self.listener.reconnects

    @property
    def listener_pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        return self.listener.pid

    @staticmethod
    def token_ended(token_id: str, deleted: bool = False) -> tuple[str, str]:
        """(channel, payload) to NOTIFY in the transaction that revokes ``token_id`` or deletes
        it (with its tenant): every replica then runs its ``on_token_end`` handlers."""
        return TOKENS, f"{'deleted' if deleted else 'revoked'} {token_id}"

    def problem(self, after_seconds: float) -> str | None:
        """For /readyz: why this replica has not heard the others' changes for too long."""
        return self.listener.problem(after_seconds)

    async def _caught_up(self) -> None:
        """Listening again: deliver what was missed, wake the reconciler (a wake-up call may
        have been sent while nobody listened) and check tokens (a revocation may have been)."""
        await self._catch_up()
        for kick in self.on_kick:
            kick(None)
        for unheard in self.on_tokens_unheard:
            await unheard()

    async def _catch_up(self) -> None:
        """Deliver what changed while nobody listened; the LISTEN is on already."""
        before = self._clock
        present: set[str] = set()
        for node_id, network_id, tenant_id, revision in await self.source.revisions():
            present.add(node_id)
            self._note(node_id, network_id, tenant_id, revision)
        for node_id, known in list(self._known.items()):
            if not known.deleted and known.stamp <= before and node_id not in present:
                gone = NodeChange(node_id, known.network_id, known.tenant_id, known.last, True)
                self._deliver(gone, known.revision)
        await self.networks.catch_up(self.source)  # after the nodes: their deletions come first
        if self.networks.pending:
            self._wake.set()

    # -- notifications to changes ----------------------------------------------------------------

    def _heard(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        self.notifications += 1
        if not isinstance(payload, str):
            return
        if channel == KICK:
            sender, *networks = payload.split(" ")
            if sender != self.instance:
                named: list[str | None] = list(networks) if networks else [None]
                for kick in self.on_kick:
                    for network_id in named:
                        kick(network_id)
            return
        if channel == TOKENS:
            how, _, token_id = payload.partition(" ")
            for end in self.on_token_end:
                end(token_id, how == "deleted")
            return
        if channel == NETWORKS:
            try:
                if self.networks.heard(json.loads(payload)):
                    self._wake.set()
            except (ValueError, KeyError, TypeError):
                log.warning("event bus: ignored a malformed notification %r", payload[:200])
            return
        try:
            note = json.loads(payload)
            node_id, network_id, tenant_id, revision = note["n"], note["w"], note["t"], note["r"]
        except (ValueError, KeyError, TypeError):
            log.warning("event bus: ignored a malformed notification %r", payload[:200])
            return
        if note.get("i") == self.instance:
            return  # ours: committed, so published here right after (it may overtake that)
        if note.get("d"):
            known = self._known.get(node_id)
            last = known.last if known is not None else None
            self._deliver(NodeChange(node_id, network_id, tenant_id, last, True), revision)
        else:
            self._note(node_id, network_id, tenant_id, revision)

    def _note(self, node_id: str, network_id: str, tenant_id: str, revision: int) -> None:
        """Revision ``revision`` of the node committed: read it if a subscriber wants it."""
        known = self._known.get(node_id)
        if known is not None and (known.deleted or revision <= known.revision):
            return  # delivered already (by our own publish, or a read of a later revision)
        # Revision 0: made by a mutation and never written since, which no bus announces (a
        # subscriber's snapshot shows it); unwanted: a later subscriber's snapshot shows it.
        if revision == 0 or not self.local.wanted(NodeChange(node_id, network_id, tenant_id, None)):
            self._remember(node_id, network_id, tenant_id, revision, None)
            return
        self._pending[node_id] = max(revision, self._pending.get(node_id, 0))
        self._wake.set()

    async def _read(self) -> None:
        delay = self.retry_first_seconds
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self.networks.pending:
                if self.networks.pending:  # first: a network comes before its nodes
                    try:
                        await self.networks.read(self.source)
                    except Exception as error:  # they stay pending: try again
                        log.warning("event bus: cannot read changed networks: %s", error)
                        await asyncio.sleep(random.uniform(delay / 2, delay))
                        delay = min(delay * 2, self.retry_max_seconds)
                        continue
                    if not self._pending:
                        continue
                taken = [self._pending.popitem(last=False) for _ in range(
                    min(self.batch, len(self._pending)))]  # fmt: skip
                ids = [node_id for node_id, _ in taken]
                try:
                    views = await self.source.views(ids)
                except Exception as error:  # put them back and try again
                    log.warning("event bus: cannot read %d changed nodes: %s", len(ids), error)
                    for node_id, revision in taken:
                        self._pending[node_id] = max(revision, self._pending.get(node_id, 0))
                    await asyncio.sleep(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, self.retry_max_seconds)
                    continue
                delay = self.retry_first_seconds
                self.reads += 1
                for view in views:  # a node not found was deleted: its own notification says so
                    change = NodeChange(view.id, view.network_id, view.tenant_id, view)
                    self._deliver(change, view.revision)
                    # Changes heard during the read that it covered need no read of their own.
                    if self._pending.get(view.id, view.revision + 1) <= view.revision:
                        del self._pending[view.id]

    def _deliver(self, change: NodeChange, revision: int) -> None:
        known = self._known.get(change.node_id)
        if known is not None and (known.deleted or (revision <= known.revision
                                                    and not change.deleted)):  # fmt: skip
            return
        self._remember(change.node_id, change.network_id, change.tenant_id, revision,
                       change.snapshot, deleted=change.deleted)  # fmt: skip
        self.local.publish(change)

    def _remember(
        self,
        node_id: str,
        network_id: str,
        tenant_id: str,
        revision: int,
        last: Any,
        *,
        deleted: bool = False,
    ) -> None:
        self._clock += 1
        self._known[node_id] = _Known(revision, network_id, tenant_id, self._clock, last, deleted)
        if deleted:
            self._deleted[node_id] = None
            if len(self._deleted) > DELETED_KEPT:
                oldest, _ = self._deleted.popitem(last=False)
                self._known.pop(oldest, None)
