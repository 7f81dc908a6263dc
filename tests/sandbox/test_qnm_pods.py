"""Pods of the QNM image run a real node in the sandbox: a coordinator and a peer made of plain
Deployments and Services (no QaaS involved) mint and share blocks over real p2p, at their pod IPs.

The peer dials the coordinator's ClusterIP, as QNM's peers do, so this also proves the sandbox's
kube-proxy role and pod networking end to end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from app.domain.qnm import DEFAULT_IMAGE
from app.sandbox.handle import SandboxState
from tests.helpers import eventually, sandbox_processes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("node") is None,
    reason="process pods need root (network namespaces) and Node.js",
)

RPC_PORT = 20010
QNM_PORTS = {"comm-p2p": 50000, "geth-p2p": 20000, "geth-rpc": RPC_PORT}


@pytest.fixture
async def process_namespace(kube_api: client.ApiClient, namespace: str) -> str:
    """The test's namespace; its pods run as processes (the suite's sandbox simulates others)."""
    await client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": {"sandbox.qaas.dev/runtime": "process"}}}
    )
    return namespace


def _service(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in QNM_PORTS.items()],
        },
    }


def _deployment(name: str, env: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "qnm",
                            "image": f"{DEFAULT_IMAGE}:latest",
                            "workingDir": "/workspace/QuorumNetworkManager",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                },
            },
        },
    }


class Node:
    """One QNM node of the test: its Service's ClusterIP and, once running, its pod."""

    def __init__(self, kube_api: client.ApiClient, namespace: str, name: str) -> None:
        self.core = client.CoreV1Api(kube_api)
        self.apps = client.AppsV1Api(kube_api)
        self.namespace = namespace
        self.name = name
        self.cluster_ip = ""

    async def create_service(self) -> str:
        service = await self.core.create_namespaced_service(self.namespace, _service(self.name))
        self.cluster_ip = service.spec.cluster_ip
        return self.cluster_ip

    async def create_deployment(self, role: str, coordinator_ip: str | None = None) -> None:
        env = {"NODE_NAME": self.name, "ROLE": role, "CONSENSUS": "raft", "IP": self.cluster_ip}
        if coordinator_ip:
            env["COORDINATING_IP"] = coordinator_ip
        await self.apps.create_namespaced_deployment(self.namespace, _deployment(self.name, env))

    async def pod(self) -> client.V1Pod | None:
        pods = await self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app={self.name}"
        )
        running = [p for p in pods.items if p.status.phase == "Running" and p.status.pod_ip]
        return running[0] if running else None

    async def rpc(self, method: str) -> Any:
        pod = await self.pod()
        if pod is None:
            return None
        url = f"http://{pod.status.pod_ip}:{RPC_PORT}"
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        try:
            async with httpx.AsyncClient(timeout=3) as http:
                answer = (await http.post(url, json=body)).json()
        except (httpx.HTTPError, ValueError):
            return None
        return answer.get("result")

    async def height(self) -> int | None:
        result = await self.rpc("eth_blockNumber")
        return int(result, 16) if isinstance(result, str) else None

    async def peers(self) -> int | None:
        result = await self.rpc("net_peerCount")
        return int(result, 16) if isinstance(result, str) else None


async def test_coordinator_and_peer_mint_and_share_blocks_at_their_pod_ips(
    kube_api: client.ApiClient, process_namespace: str, sandbox: SandboxState
) -> None:
    coordinator = Node(kube_api, process_namespace, "coordinator")
    peer = Node(kube_api, process_namespace, "peer")
    lost = Node(kube_api, process_namespace, "lost")
    coordinator_ip = await coordinator.create_service()
    await peer.create_service()
    await lost.create_service()
    await coordinator.create_deployment("coordinator")
    await peer.create_deployment("dynamicPeer", coordinator_ip)
    # A ClusterIP of this cluster that nothing serves: the peer waits for it forever.
    await lost.create_deployment("dynamicPeer", await _unused_cluster_ip(kube_api, lost))

    async def both_peered() -> bool:
        return await coordinator.peers() == 1 and await peer.peers() == 1

    await eventually(both_peered, within=60, every=1)
    first = (await coordinator.height(), await peer.height())

    async def both_grew() -> bool:
        heights = (await coordinator.height(), await peer.height())
        return None not in heights and all(h > f for h, f in zip(heights, first, strict=True))  # type: ignore[operator]

    await eventually(both_grew, within=60, every=1)
    assert await lost.peers() is None, "a peer that never reached its coordinator answers no RPC"
    assert await coordinator.peers() == 1, "the lost peer must not count as a peer"
    lost_pod = await lost.pod()
    assert lost_pod is not None
    said = _kubectl(sandbox.kubeconfig, "logs", "-n", process_namespace, lost_pod.metadata.name)
    assert "waiting for the coordinator" in said

    # kubectl logs shows the process's own output, through the apiserver and the kubelet.
    pod = await peer.pod()
    assert pod is not None
    logs = _kubectl(sandbox.kubeconfig, "logs", "-n", process_namespace, pod.metadata.name)
    assert "coordinator" in logs.lower()


async def _unused_cluster_ip(kube_api: client.ApiClient, node: Node) -> str:
    """The Service range's address next to ``node``'s own, with no Service behind it."""
    used = {
        s.spec.cluster_ip
        for s in (await client.CoreV1Api(kube_api).list_service_for_all_namespaces()).items
    }
    base = [int(part) for part in node.cluster_ip.split(".")]
    for last in range(2, 250):
        candidate = ".".join(map(str, [*base[:3], last]))
        if candidate not in used:
            return candidate
    raise AssertionError("no free ClusterIP next to the test's Services")


def _kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


async def test_a_killed_node_process_is_restarted_and_counted(
    kube_api: client.ApiClient, process_namespace: str
) -> None:
    coordinator = Node(kube_api, process_namespace, "coordinator")
    await coordinator.create_service()
    await coordinator.create_deployment("coordinator")

    async def answering() -> bool:
        return await coordinator.height() is not None

    await eventually(answering, within=60, every=0.5)
    pod = await coordinator.pod()
    assert pod is not None
    pids = sandbox_processes(f"/pods/{pod.metadata.uid}/")
    assert pids, "the pod's process should be found by its root folder"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    async def restarted() -> client.V1Pod | None:
        now = await coordinator.core.read_namespaced_pod(pod.metadata.name, process_namespace)
        status = (now.status.container_statuses or [None])[0]
        if status is None or status.restart_count < 1:
            return None
        return now

    after = await eventually(restarted, within=60, every=0.5)
    last = after.status.container_statuses[0].last_state.terminated
    assert last is not None
    assert last.exit_code == 128 + signal.SIGKILL
    await eventually(answering, within=60, every=0.5)  # and it answers again


def _stateful_set(name: str) -> dict[str, Any]:
    labels = {"app": name}
    script = "if [ -f mark ]; then echo found $(cat mark); else echo first > mark; echo wrote; fi"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": "qaas.dev/sandbox-host:1",
                            "command": ["sh", "-c", f"{script}; exec sleep 3600"],
                            "workingDir": "/data",  # path translation: the claim's folder
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Mi"}},
                    },
                }
            ],
        },
    }


async def test_a_stateful_pod_finds_its_file_after_it_is_replaced(
    kube_api: client.ApiClient, process_namespace: str, sandbox: SandboxState
) -> None:
    core = client.CoreV1Api(kube_api)
    await client.AppsV1Api(kube_api).create_namespaced_stateful_set(
        process_namespace, _stateful_set("keeper")
    )

    def logs() -> str:
        try:
            return _kubectl(sandbox.kubeconfig, "logs", "-n", process_namespace, "keeper-0")
        except subprocess.CalledProcessError:
            return ""  # not running yet

    async def said(text: str, uid: str | None = None) -> str | None:
        try:
            pod = await core.read_namespaced_pod("keeper-0", process_namespace)
        except client.ApiException:
            return None
        if pod.metadata.uid == uid or pod.status.phase != "Running":
            return None
        return pod.metadata.uid if text in logs() else None

    first = await eventually(lambda: said("wrote"), within=60, every=0.5)
    claim = await core.read_namespaced_persistent_volume_claim("data-keeper-0", process_namespace)
    assert claim.status.phase == "Bound"
    await core.delete_namespaced_pod("keeper-0", process_namespace)
    # The StatefulSet makes a new pod of the same name, on the same claim.
    await eventually(lambda: said("found first", uid=first), within=60, every=0.5)
