"""List, then watch: how the sandbox's controllers (kube-proxy role, volume provisioner) follow a
kind of object through the API.

`follow` lists, hands the items over, then watches from the list's resourceVersion and hands over
every event. A 410 Gone relists at once; any other API error or a broken connection relists a
second later. It returns only when cancelled.

Example::

    async def listed(items): ...
    async def changed(kind, item): ...            # kind: ADDED, MODIFIED or DELETED
    await follow("services", core.list_service_for_all_namespaces, listed, changed)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("qaas.sandbox")
Object = dict[str, Any]


async def raw(call: Awaitable[Any]) -> Object:
    """The JSON body of an API call made with ``_preload_content=False``.

    The client raises on an error status only when it preloads; this raises the same error.
    """
    response = await call
    body: Object = await response.json()
    if not 200 <= response.status <= 299:
        raise ApiException(status=response.status, reason=body.get("message", response.reason))
    return body


async def follow(
    what: str,
    lister: Callable[..., Awaitable[Any]],
    listed: Callable[[list[Object]], Awaitable[None]],
    changed: Callable[[str, Object], Awaitable[None]],
) -> None:
    """Follow the objects ``lister`` lists until cancelled (see the module's docstring)."""
    while True:
        try:
            listing = await raw(lister(_preload_content=False))
            await listed(listing["items"])
            async with watch.Watch() as stream:
                events = stream.stream(
                    lister,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=120,
                )
                async for event in events:
                    await changed(event["type"], event["raw_object"])
        except ApiException as error:
            if error.status != 410:
                log.warning("%s watch failed (%s); relisting", what, error.status)
                await asyncio.sleep(1)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            log.warning("%s watch interrupted (%s); relisting", what, error)
            await asyncio.sleep(1)
