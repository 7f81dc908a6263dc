"""The kubelet's Node object: created (or refreshed) Ready, untainted, with a realistic capacity.

The node's InternalIP is where the apiserver dials the kubelet (``pods/log``), at the port the
status publishes in ``daemonEndpoints.kubeletEndpoint.Port`` (0: no endpoint).
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.status import MERGE_PATCH, condition, now


async def register_node(
    core: client.CoreV1Api, name: str, node_ip: str, pod_cidr: str, kubelet_port: int
) -> None:
    """Create (or refresh) the Node ``name`` and write its status."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "qaas.dev/simulated": "true",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
    }
    try:
        await core.create_node(node)
    except ApiException as error:
        if error.status != 409:
            raise
    # The TaintNodesByCondition admission plugin adds a not-ready taint on create; a real
    # kubelet's Ready status makes the node lifecycle controller lift it, which is off here.
    await core.patch_node(name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH)
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    status: dict[str, Any] = {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": node_ip},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "conditions": [
            {**condition(kind, False), "reason": f"KubeletHas{reason}",
             "lastHeartbeatTime": now()}
            for kind, reason in (
                ("MemoryPressure", "SufficientMemory"),
                ("DiskPressure", "NoDiskPressure"),
                ("PIDPressure", "SufficientPID"),
            )
        ]
        + [{**condition("Ready", True), "reason": "KubeletReady", "lastHeartbeatTime": now()}],
        "nodeInfo": {
            "kubeletVersion": "v1.20.2",
            "kubeProxyVersion": "v1.20.2",
            "containerRuntimeVersion": "sandbox://1.0",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "QaaS sandbox node",
            "kernelVersion": "sandbox",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    }  # fmt: skip
    await core.patch_node_status(name, {"status": status}, _content_type=MERGE_PATCH)
