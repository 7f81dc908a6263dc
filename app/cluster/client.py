"""The one place that talks to the Kubernetes API (with kubernetes_asyncio), in plain dicts.

Every call returns JSON dicts and raises only our error types (see ``errors.py``).

Example::

    cluster = await Cluster.connect(settings)
    services = cluster.resource(SERVICES, namespace="default")
    await services.create({"metadata": {"name": "x"}, "spec": {...}})
    items, version = await services.list(label_selector="app.kubernetes.io/managed-by=qaas")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from app.cluster.errors import ClusterUnavailable, Conflict, KubeError, NotFound, from_status

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceKind:
    """A namespaced kind: which generated API class serves it, and its method suffix."""

    api: str
    suffix: str
    kind: str


SERVICES = ResourceKind("CoreV1Api", "namespaced_service", "Service")
DEPLOYMENTS = ResourceKind("AppsV1Api", "namespaced_deployment", "Deployment")
PODS = ResourceKind("CoreV1Api", "namespaced_pod", "Pod")
RESOURCE_QUOTAS = ResourceKind("CoreV1Api", "namespaced_resource_quota", "ResourceQuota")
ROLE_BINDINGS = ResourceKind("RbacAuthorizationV1Api", "namespaced_role_binding", "RoleBinding")


async def _call(call: Callable[[], Awaitable[Any]]) -> Any:
    """Run one API call, returning the decoded JSON body, raising our errors."""
    try:
        response = await call()
        # With _preload_content=False the client hands back error responses as they are.
        if response.status >= 400:
            raise from_status(response.status, await response.text(), response.reason or "")
        return await response.json()
    except ApiException as error:
        raise from_status(error.status, error.body, error.reason or "") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        raise ClusterUnavailable(f"the Kubernetes API is unreachable: {error!r}") from None


class Resource:
    """CRUD, list and watch for one kind in one namespace."""

    def __init__(self, api_client: client.ApiClient, kind: ResourceKind, namespace: str) -> None:
        self._api = getattr(client, kind.api)(api_client)
        self.kind = kind
        self.namespace = namespace

    def _method(self, verb: str) -> Callable[..., Awaitable[Any]]:
        method: Callable[..., Awaitable[Any]] = getattr(self._api, f"{verb}_{self.kind.suffix}")
        return method

    async def create(self, body: Obj) -> Obj:
        method = self._method("create")
        result: Obj = await _call(lambda: method(self.namespace, body, _preload_content=False))
        return result

    async def get(self, name: str) -> Obj:
        method = self._method("read")
        result: Obj = await _call(lambda: method(name, self.namespace, _preload_content=False))
        return result

    async def replace(self, name: str, body: Obj) -> Obj:
        method = self._method("replace")
        result: Obj = await _call(
            lambda: method(name, self.namespace, body, _preload_content=False)
        )
        return result

    async def delete(self, name: str, uid: str | None = None) -> None:
        """Delete in the background (dependents are collected by the garbage collector)."""
        method = self._method("delete")
        options: Obj = {"propagationPolicy": "Background"}
        if uid:  # never delete a newer object that took the same name
            options["preconditions"] = {"uid": uid}
        await _call(lambda: method(name, self.namespace, body=options, _preload_content=False))

    async def list(self, label_selector: str = "") -> tuple[list[Obj], str]:
        """All matching objects and the list's resourceVersion (to watch from)."""
        method = self._method("list")
        result = await _call(
            lambda: method(self.namespace, label_selector=label_selector, _preload_content=False)
        )
        return list(result["items"]), str(result["metadata"]["resourceVersion"])

    async def watch(
        self, resource_version: str, label_selector: str = "", timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Events (type, object) after ``resource_version``; ends when the server closes.

        Raises ``Gone`` when the version is too old (relist), ``ClusterUnavailable`` when the
        stream breaks.
        """
        method = self._method("list")
        async with watch.Watch() as stream:
            events = stream.stream(
                method,
                self.namespace,
                label_selector=label_selector,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
            )
            try:
                async for event in events:
                    yield str(event["type"]), event["raw_object"]
            except ApiException as error:
                raise from_status(error.status, error.body, error.reason or "") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                raise ClusterUnavailable(f"the watch stream broke: {error!r}") from None


class Cluster:
    """An API connection and the namespace QaaS works in."""

    def __init__(self, api_client: client.ApiClient, namespace: str, description: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.description = description

    def resource(self, kind: ResourceKind, namespace: str | None = None) -> Resource:
        return Resource(self.api_client, kind, namespace or self.namespace)

    async def ensure_namespace(self, name: str, labels: dict[str, str]) -> bool:
        """Create namespace ``name`` unless it exists; True if we created it."""
        api = client.CoreV1Api(self.api_client)
        try:
            await _call(lambda: api.read_namespace(name, _preload_content=False))
            return False
        except NotFound:
            pass
        body = {"metadata": {"name": name, "labels": labels}}
        try:
            await _call(lambda: api.create_namespace(body, _preload_content=False))
        except Conflict:
            return False
        return True

    async def reachable(self) -> bool:
        """True if the API server answers /version (used by /readyz)."""
        with contextlib.suppress(KubeError):
            api = client.VersionApi(self.api_client)
            await _call(lambda: api.get_code(_preload_content=False))
            return True
        return False

    async def close(self) -> None:
        await self.api_client.close()
