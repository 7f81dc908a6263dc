"""A shared informer: list, then watch from the list's resourceVersion; relist when needed.

One informer per namespace and kind serves every consumer: its number of watches never depends
on how many subscribers there are. It keeps a cache of the objects, hands each real change to
its handler once (a duplicate event with a resourceVersion already seen is dropped). A broken
stream is watched again from the last version handled; after ``410 Gone``, an expired version
or a failing handler it relists, with backoff and jitter, turning the difference between the
cache and the new list into events, so no change is lost. A change whose handler raised is
taken back out of the cache first, so the relist hands it over again: a database that is down
for a while delays status, never loses it.

The cache can be indexed by a label (``index_label``): ``cache.having(value)`` answers "the
objects with that label value" without a scan, so a consumer that looks up an object's
siblings on every event stays O(1) per event at 10,000 objects. A relist first hands the
objects it is about to deliver to ``on_relist`` (if given), in one call: a consumer can load
what it needs for all of them at once instead of once per object.

Example::

    informer = Informer(cluster.resource(PODS), selector, handler, index_label=NODE_ID)
    task = asyncio.create_task(informer.run())
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.cluster.client import Resource
from app.cluster.errors import ClusterUnavailable, Gone, KubeError
from app.metrics import INFORMER_RELISTS, INFORMER_WATCH_RESTARTS

log = logging.getLogger("qaas.informer")
Obj = dict[str, Any]
Handler = Callable[[str, Obj], Awaitable[None]]
BatchHandler = Callable[[list[Obj]], Awaitable[None]]


class Cache(dict[str, Obj]):
    """Objects by uid, with an index of their uids by one label's value (if a label is given).
    Only item assignment, ``del`` and ``pop`` change it (what the informer uses)."""

    def __init__(self, index_label: str | None = None, objects: dict[str, Obj] | None = None):
        super().__init__()
        self.index_label = index_label
        self._index: dict[str, set[str]] = {}
        for uid, obj in (objects or {}).items():
            self[uid] = obj

    def _key(self, obj: Obj) -> str | None:
        if self.index_label is None:
            return None
        return (obj.get("metadata", {}).get("labels") or {}).get(self.index_label)

    def _unindex(self, uid: str) -> None:
        old = super().get(uid)
        if old is not None and (key := self._key(old)) is not None:
            uids = self._index.get(key, set())
            uids.discard(uid)
            if not uids:
                self._index.pop(key, None)

    def __setitem__(self, uid: str, obj: Obj) -> None:
        self._unindex(uid)
        super().__setitem__(uid, obj)
        if (key := self._key(obj)) is not None:
            self._index.setdefault(key, set()).add(uid)

    def __delitem__(self, uid: str) -> None:
        self._unindex(uid)
        super().__delitem__(uid)

    def pop(self, uid: str, default: Any = None) -> Any:
        self._unindex(uid)
        return super().pop(uid, default)

    def having(self, value: str) -> list[Obj]:
        """The objects whose index label has ``value`` (needs ``index_label``)."""
        if self.index_label is None:
            raise ValueError("this cache has no index")
        return [self[uid] for uid in self._index.get(value, ())]


class Informer:
    def __init__(
        self,
        resource: Resource,
        label_selector: str,
        handler: Handler,
        *,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        index_label: str | None = None,
        on_relist: BatchHandler | None = None,
    ) -> None:
        self.resource = resource
        self.label_selector = label_selector
        self.handler = handler
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.on_relist = on_relist
        self.cache = Cache(index_label)  # by uid
        self.synced = asyncio.Event()
        self.relists = 0
        self.watches = 0
        self.gone = 0
        self.rewatches = 0  # broken streams watched again from their last version
        self.version = ""  # the last resourceVersion handled: a re-watch starts after it
        self._breaks = 0  # broken streams in a row
        self.handler_failures = 0
        # When the informer started failing without a successful relist since (None: healthy).
        self.failing_since: float | None = None
        self.last_error: str | None = None

    async def run(self) -> None:
        """List and watch until cancelled; every failure is retried after a backoff.

        A stream that breaks is watched again from the last version seen (nothing is missed,
        and no full list is needed); only 410 Gone, a refused re-watch or a failing handler
        make it list everything again."""
        failures = 0
        while True:
            try:
                self.version = await self._relist()
                failures, self.failing_since, self.last_error = 0, None, None
                await self._watch_on(failures)
            except Gone:
                self.gone += 1
                failures += 1
                log.info("watch of %s expired (410 Gone); relisting", self.resource.kind.kind)
            except KubeError as error:
                failures += 1
                self._failed(f"the watch broke: {error}")
            except Exception as error:  # a handler's fault (e.g. the database is down)
                failures += 1
                self.handler_failures += 1
                self._failed(f"handling a change failed: {error!r}")
                log.exception("handling a %s change failed", self.resource.kind.kind)
            delay = min(self.max_backoff, 0.2 * 2**failures) * random.uniform(0.5, 1.0)
            log.warning("relisting %s in %.1fs", self.resource.kind.kind, delay)
            await asyncio.sleep(delay)

    async def _watch_on(self, failures: int) -> None:
        """Watch from ``self.version`` for as long as it can; a broken stream is re-watched
        from the last version it delivered, after a backoff while the breaks go on (a stream
        that delivers something counts as healthy again)."""
        self._breaks = failures
        while True:
            try:
                await self._watch(self.version)
                self._breaks = 0  # a normal close (the server's timeout): watch again at once
            except ClusterUnavailable as error:
                self._breaks += 1
                failures = self._breaks
                self.rewatches += 1
                INFORMER_WATCH_RESTARTS.inc()
                self._failed(f"the watch broke: {error}")
                delay = min(self.max_backoff, 0.2 * 2**failures) * random.uniform(0.5, 1.0)
                log.info("watch of %s broke (%s); watching again from %s in %.1fs",
                         self.resource.kind.kind, error, self.version, delay)  # fmt: skip
                await asyncio.sleep(delay)

    def _failed(self, problem: str) -> None:
        self.last_error = problem
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    async def _deliver(self, kind: str, obj: Obj, previous: Obj | None) -> None:
        """Hand one change over; if the handler raises, put ``previous`` back in the cache so
        that the next relist sees the change again."""
        try:
            await self.handler(kind, obj)
        except BaseException:
            uid = obj["metadata"]["uid"]
            if previous is None:
                self.cache.pop(uid, None)
            else:
                self.cache[uid] = previous
            raise

    async def _relist(self) -> str:
        items, version = await self.resource.list(self.label_selector)
        self.relists += 1
        INFORMER_RELISTS.inc()
        fresh = {o["metadata"]["uid"]: o for o in items}
        gone = [self.cache[uid] for uid in self.cache.keys() - fresh.keys()]
        changed = [
            o
            for uid, o in fresh.items()
            if self.cache.get(uid, {}).get("metadata", {}).get("resourceVersion")
            != o["metadata"]["resourceVersion"]
        ]
        previous, self.cache = self.cache, Cache(self.cache.index_label, fresh)
        events = [("DELETED", obj) for obj in gone] + [("MODIFIED", obj) for obj in changed]
        if events and self.on_relist is not None:
            try:
                await self.on_relist([obj for _, obj in events])
            except BaseException:
                self.cache = previous  # nothing was handed over: the next relist sees it all
                raise
        for index, (kind, obj) in enumerate(events):
            try:
                await self._deliver(kind, obj, previous.get(obj["metadata"]["uid"]))
            except BaseException:
                # What was not handed over yet must look unseen to the next relist.
                for _, rest in events[index + 1 :]:
                    uid = rest["metadata"]["uid"]
                    if uid in previous:
                        self.cache[uid] = previous[uid]
                    else:
                        self.cache.pop(uid, None)
                raise
        self.synced.set()
        return version

    async def _watch(self, version: str) -> None:
        self.watches += 1
        async for kind, obj in self.resource.watch(
            version, self.label_selector, self.watch_timeout
        ):
            if self._breaks or self.failing_since is not None:  # it delivers: healthy again
                self._breaks, self.failing_since, self.last_error = 0, None, None
            meta = obj.get("metadata", {})
            version = meta.get("resourceVersion", version)
            if kind == "BOOKMARK":
                self.version = version
                continue
            uid = meta["uid"]
            if kind == "DELETED":
                if (known := self.cache.pop(uid, None)) is not None:
                    await self._deliver(kind, obj, known)
                self.version = version
                continue
            known = self.cache.get(uid)
            if known is not None and known["metadata"]["resourceVersion"] == version:
                self.version = version
                continue  # a duplicate: already handled
            self.cache[uid] = obj
            await self._deliver(kind, obj, known)
            self.version = version  # handled: a re-watch starts after it
