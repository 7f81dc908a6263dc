"""Room for exactly N node pods: filler pods take the rest of the cluster's CPU.

A QaaS node pod requests 100m of CPU. One filler pod per cluster node, bound to it directly
(``spec.nodeName``), requests what is free there (pods being deleted, or in a namespace being
deleted, count as gone already), minus room for ``pods`` node pods on the first node and
nothing on the others; the scheduler then leaves any further node pod Pending with
``PodScheduled=False`` ("0/1 nodes are available: 1 Insufficient cpu."). Fillers carry no QaaS
label, so they are neither orphans nor nodes to the harness.

Example::

    release = await make_room(kube, "chaos-ns", pods=5)
    ...
    await release()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

NODE_POD_CPU_MILLI = 100  # app/cluster/objects.py: every node pod requests cpu 100m
FILLER_LABEL = "qaas.dev/chaos-filler"


def milli(quantity: str) -> int:
    """A CPU quantity ("8", "1500m", "0.5") in millicores."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return int(float(quantity) * 1000)


def _requested(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod["spec"].get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        total += milli(requests["cpu"]) if "cpu" in requests else 0
    return total


async def make_room(
    kube: client.ApiClient, namespace: str, pods: int
) -> Callable[[], Awaitable[None]]:
    """Create the fillers; returns the coroutine function that deletes them."""
    core = client.CoreV1Api(kube)
    nodes = (await (await core.list_node(_preload_content=False)).json())["items"]
    spaces = (await (await core.list_namespace(_preload_content=False)).json())["items"]
    leaving = {n["metadata"]["name"] for n in spaces if n["status"].get("phase") == "Terminating"}
    created: list[str] = []
    for index, node in enumerate(sorted(nodes, key=lambda n: n["metadata"]["name"])):
        name = node["metadata"]["name"]
        bound = await core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={name}", _preload_content=False
        )
        used = sum(
            _requested(p)
            for p in (await bound.json())["items"]
            # Pods on their way out (another test's namespace being deleted) free their room soon.
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["namespace"] not in leaving
        )
        free = milli(node["status"]["allocatable"]["cpu"]) - used
        keep = pods * NODE_POD_CPU_MILLI if index == 0 else 0
        take = free - keep
        if take <= 0:
            continue
        filler = f"chaos-filler-{index}"
        await core.create_namespaced_pod(namespace, {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": filler, "labels": {FILLER_LABEL: "true"}},
            "spec": {
                "nodeName": name,
                "automountServiceAccountToken": False,
                "containers": [{"name": "filler", "image": "filler",
                                "resources": {"requests": {"cpu": f"{take}m"}}}],
            },
        })  # fmt: skip
        created.append(filler)

    async def release() -> None:
        for filler in created:
            try:
                await core.delete_namespaced_pod(filler, namespace, grace_period_seconds=0)
            except ApiException as error:
                if error.status != 404:
                    raise

    return release
