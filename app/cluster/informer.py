"""A shared informer: list, then watch from the list's resourceVersion; relist when needed.

One informer per namespace and kind serves every consumer: its number of watches never depends
on how many subscribers there are. It keeps a cache of the objects, hands each real change to
its handler once (a duplicate event with a resourceVersion already seen is dropped), and after
``410 Gone``, an expired version or a broken stream it relists with backoff and jitter, turning
the difference between the cache and the new list into events, so no change is lost.

Example::

    informer = Informer(cluster.resource(PODS), selector, handler)
    task = asyncio.create_task(informer.run())
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from app.cluster.client import Resource
from app.cluster.errors import Gone, KubeError

log = logging.getLogger("qaas.informer")
Obj = dict[str, Any]
Handler = Callable[[str, Obj], Awaitable[None]]


class Informer:
    def __init__(
        self,
        resource: Resource,
        label_selector: str,
        handler: Handler,
        *,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        self.resource = resource
        self.label_selector = label_selector
        self.handler = handler
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.cache: dict[str, Obj] = {}  # by uid
        self.synced = asyncio.Event()
        self.relists = 0
        self.watches = 0
        self.gone = 0

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._relist()
                failures = 0
                while True:  # re-watch from the last version seen after a normal close
                    version = await self._watch(version)
            except Gone:
                self.gone += 1
                log.info("watch of %s expired (410 Gone); relisting", self.resource.kind.kind)
            except KubeError as error:
                failures += 1
                delay = min(self.max_backoff, 0.2 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning(
                    "watch of %s broke (%s); relisting in %.1fs",
                    self.resource.kind.kind,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _relist(self) -> str:
        items, version = await self.resource.list(self.label_selector)
        self.relists += 1
        fresh = {o["metadata"]["uid"]: o for o in items}
        gone = [self.cache[uid] for uid in self.cache.keys() - fresh.keys()]
        changed = [
            o
            for uid, o in fresh.items()
            if self.cache.get(uid, {}).get("metadata", {}).get("resourceVersion")
            != o["metadata"]["resourceVersion"]
        ]
        self.cache = fresh
        for obj in gone:
            await self.handler("DELETED", obj)
        for obj in changed:
            await self.handler("MODIFIED", obj)
        self.synced.set()
        return version

    async def _watch(self, version: str) -> str:
        self.watches += 1
        async for kind, obj in self.resource.watch(
            version, self.label_selector, self.watch_timeout
        ):
            meta = obj.get("metadata", {})
            version = meta.get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            uid = meta["uid"]
            if kind == "DELETED":
                if self.cache.pop(uid, None) is not None:
                    await self.handler(kind, obj)
                continue
            known = self.cache.get(uid)
            if known is not None and known["metadata"]["resourceVersion"] == version:
                continue  # a duplicate: already handled
            self.cache[uid] = obj
            await self.handler(kind, obj)
        return version
