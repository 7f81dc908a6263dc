"""The one place that talks to the Kubernetes API (with kubernetes_asyncio), in plain dicts.

Every call returns JSON dicts and raises only our error types (see ``errors.py``). Calls are
rate-limited, timed out and retried as ``retry.py`` says, before an error reaches the caller.

Example::

    cluster = await connect(target, namespace, settings=settings)   # see connect.py
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
from kubernetes_asyncio import client

from app.cluster.errors import ClusterUnavailable, Conflict, KubeError, NotFound, from_status
from app.cluster.retry import Caller, ClusterStats, KubeLimits, decode, unavailable
from app.metrics import cluster_object

Obj = dict[str, Any]
LIST_PAGE = 250  # objects a list reads per request


@dataclass(frozen=True)
class ResourceKind:
    """A namespaced kind: which generated API class serves it, and its method suffix."""

    api: str
    suffix: str
    kind: str


SERVICES = ResourceKind("CoreV1Api", "namespaced_service", "Service")
# Nodes ran as Deployments before they ran as StatefulSets: QaaS still lists and deletes them.
DEPLOYMENTS = ResourceKind("AppsV1Api", "namespaced_deployment", "Deployment")
STATEFULSETS = ResourceKind("AppsV1Api", "namespaced_stateful_set", "StatefulSet")
CLAIMS = ResourceKind("CoreV1Api", "namespaced_persistent_volume_claim", "PersistentVolumeClaim")
PODS = ResourceKind("CoreV1Api", "namespaced_pod", "Pod")
RESOURCE_QUOTAS = ResourceKind("CoreV1Api", "namespaced_resource_quota", "ResourceQuota")
ROLE_BINDINGS = ResourceKind("RbacAuthorizationV1Api", "namespaced_role_binding", "RoleBinding")
NETWORK_POLICIES = ResourceKind("NetworkingV1Api", "namespaced_network_policy", "NetworkPolicy")


class Resource:
    """CRUD, list and watch for one kind in one namespace."""

    def __init__(
        self,
        api_client: client.ApiClient,
        kind: ResourceKind,
        namespace: str,
        caller: Caller | None = None,
    ) -> None:
        self._api = getattr(client, kind.api)(api_client)
        self.kind = kind
        self.namespace = namespace
        self.caller = caller or Caller()

    def _method(self, verb: str) -> Callable[..., Awaitable[Any]]:
        method: Callable[..., Awaitable[Any]] = getattr(self._api, f"{verb}_{self.kind.suffix}")
        return method

    async def create(self, body: Obj) -> Obj:
        method = self._method("create")
        result: Obj = await self.caller.call(
            "create",
            lambda t: method(self.namespace, body, _preload_content=False, _request_timeout=t),
        )
        cluster_object(self.kind.kind, "created")
        return result

    async def get(self, name: str) -> Obj:
        method = self._method("read")
        result: Obj = await self.caller.call(
            "get",
            lambda t: method(name, self.namespace, _preload_content=False, _request_timeout=t),
        )
        return result

    async def replace(self, name: str, body: Obj) -> Obj:
        method = self._method("replace")
        result: Obj = await self.caller.call(
            "replace",
            lambda t: method(
                name, self.namespace, body, _preload_content=False, _request_timeout=t
            ),
        )
        cluster_object(self.kind.kind, "replaced")
        return result

    async def delete(self, name: str, uid: str | None = None) -> None:
        """Delete in the background (dependents are collected by the garbage collector)."""
        method = self._method("delete")
        options: Obj = {"propagationPolicy": "Background"}
        if uid:  # never delete a newer object that took the same name
            options["preconditions"] = {"uid": uid}
        await self.caller.call(
            "delete",
            lambda t: method(
                name, self.namespace, body=options, _preload_content=False, _request_timeout=t
            ),
        )
        cluster_object(self.kind.kind, "deleted")

    async def list(self, label_selector: str = "") -> tuple[list[Obj], str]:
        """All matching objects and the list's resourceVersion (to watch from).

        Read in pages of ``LIST_PAGE`` objects (the API's ``limit`` and ``continue``, one
        consistent snapshot): a whole answer is decoded in one stretch of the event loop,
        which also serves the API's answers (a page of 500 real StatefulSets took about 50 ms
        to read and decode on a slow machine, bench/reconcile_scale.py)."""
        method = self._method("list")
        items: list[Obj] = []
        token: str | None = None
        while True:

            def page(t: aiohttp.ClientTimeout, token: str | None = token) -> Awaitable[Any]:
                return method(
                    self.namespace,
                    label_selector=label_selector,
                    limit=LIST_PAGE,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=t,
                )

            result = await self.caller.call("list", page)
            items.extend(result["items"])
            token = result["metadata"].get("continue")
            if not token:
                return items, str(result["metadata"]["resourceVersion"])

    async def watch(
        self, resource_version: str, label_selector: str = "", timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Events (type, object) after ``resource_version``; ends when the server closes.

        Raises ``Gone`` when the version is too old (relist), ``ClusterUnavailable`` when the
        stream breaks or stays silent longer than the server's own timeout allows.
        """
        method = self._method("list")
        response = await self.caller.open_stream(
            lambda t: method(
                self.namespace,
                watch=True,
                label_selector=label_selector,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=t,
            ),
            read_timeout=timeout_seconds + self.caller.limits.timeout,
        )
        try:
            while line := await response.content.readline():
                event = decode(line)
                kind, obj = str(event["type"]), event["object"]
                if kind == "ERROR":  # e.g. 410 Expired: a Status instead of an object
                    raise from_status(int(obj.get("code") or 500), obj)
                yield kind, obj
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise unavailable(error, "the watch stream broke") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ClusterUnavailable(f"the watch stream is garbled: {error!r}") from None
        finally:
            response.close()


class Cluster:
    """An API connection and the namespace QaaS works in. Every call of every Resource it
    hands out shares one ``Caller``: one rate budget, one set of limits, one ``stats``."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        description: str,
        *,
        limits: KubeLimits | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.description = description
        self.caller = Caller(limits)

    @property
    def stats(self) -> ClusterStats:
        """Requests, retries by reason and throttle waits so far (see ``retry.py``)."""
        return self.caller.stats

    def resource(self, kind: ResourceKind, namespace: str | None = None) -> Resource:
        return Resource(self.api_client, kind, namespace or self.namespace, self.caller)

    async def ensure_namespace(self, name: str, labels: dict[str, str]) -> bool:
        """Create namespace ``name`` unless it exists; True if we created it."""
        api = client.CoreV1Api(self.api_client)
        try:
            await self.caller.call(
                "get",
                lambda t: api.read_namespace(name, _preload_content=False, _request_timeout=t),
            )
            return False
        except NotFound:
            pass
        body = {"metadata": {"name": name, "labels": labels}}
        try:
            await self.caller.call(
                "create",
                lambda t: api.create_namespace(body, _preload_content=False, _request_timeout=t),
            )
        except Conflict:
            return False
        cluster_object("Namespace", "created")
        return True

    async def delete_namespace(self, name: str) -> bool:
        """Ask for namespace ``name`` to be deleted (with everything in it); False if it was
        not there. Kubernetes finishes the deletion in the background."""
        api = client.CoreV1Api(self.api_client)
        try:
            await self.caller.call(
                "delete",
                lambda t: api.delete_namespace(name, _preload_content=False, _request_timeout=t),
            )
        except NotFound:
            return False
        cluster_object("Namespace", "deleted")
        return True

    async def pod_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str:
        """The last ``tail_lines`` lines of a container's log (``pods/log``), at most
        ``limit_bytes`` of them (the kubelet cuts the text there, possibly inside a line).
        A read: retried like ``get``; a missing pod is ``NotFound``."""
        api = client.CoreV1Api(self.api_client)
        body: bytes = await self.caller.call(
            "get",
            lambda t: api.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=tail_lines,
                limit_bytes=limit_bytes,
                _preload_content=False,
                _request_timeout=t,
            ),
            raw=True,
        )
        return body.decode("utf-8", errors="replace")

    async def reachable(self) -> bool:
        """True if the API server answers /version (used by /readyz); one attempt, no retry."""
        with contextlib.suppress(KubeError):
            api = client.VersionApi(self.api_client)
            await self.caller.call(
                "version",
                lambda t: api.get_code(_preload_content=False, _request_timeout=t),
                retries=0,
            )
            return True
        return False

    async def close(self) -> None:
        await self.api_client.close()
