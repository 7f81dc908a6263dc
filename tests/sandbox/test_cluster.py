"""The sandbox behaves like a real cluster: controllers, scheduler, services, RBAC, kubectl."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from app.sandbox.kubelet import BEHAVIOR_ANNOTATION
from tests.helpers import eventually


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }


def _pod(name: str, behavior: str, restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {BEHAVIOR_ANNOTATION: behavior}},
        "spec": {
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": "example.invalid/app:1"}],
        },
    }


async def test_simulated_node_is_ready_and_schedulable(kube_api: client.ApiClient) -> None:
    nodes = (await client.CoreV1Api(kube_api).list_node()).items
    assert [n.metadata.name for n in nodes] == ["sandbox-node-1"]
    node = nodes[0]
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert not node.spec.taints
    assert node.status.allocatable["pods"] == "110"


async def test_deployment_pods_run_and_disappear_with_it(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    await apps.create_namespaced_deployment(namespace, _deployment("web", 2))

    async def two_running_ready_pods() -> list[Any] | None:
        pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
        running = [
            p
            for p in pods
            if p.status.phase == "Running"
            and all(cs.ready for cs in p.status.container_statuses or [False])
            and {c.type: c.status for c in p.status.conditions}.get("Ready") == "True"
        ]
        return running if len(running) == 2 else None

    pods = await eventually(two_running_ready_pods, within=5)
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2
    assert all(ip.startswith("10.244.") for ip in ips)

    deployment = await apps.read_namespaced_deployment("web", namespace)
    assert deployment.status.ready_replicas == 2

    await apps.delete_namespaced_deployment("web", namespace, propagation_policy="Foreground")

    async def no_pods_left() -> bool:
        return not (await core.list_namespaced_pod(namespace)).items

    await eventually(no_pods_left, within=15)


async def test_node_port_service_gets_cluster_ip_and_node_port(
    kube_api: client.ApiClient, namespace: str
) -> None:
    service = await client.CoreV1Api(kube_api).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "edge"},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 8545}]},
        },
    )
    assert service.spec.cluster_ip.startswith("10.96.")
    assert 30000 <= service.spec.ports[0].node_port <= 32767


async def test_crash_loop_shows_growing_restarts(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_pod(namespace, _pod("crasher", "crash-loop"))

    async def restarts(at_least: int) -> Any:
        pod = await core.read_namespaced_pod("crasher", namespace)
        status = (pod.status.container_statuses or [None])[0]
        if status is None or status.restart_count < at_least:
            return None
        return status

    first = await eventually(lambda: restarts(1), within=10)
    assert first.state.waiting.reason == "CrashLoopBackOff"
    later = await eventually(lambda: restarts(first.restart_count + 1), within=10)
    assert later.restart_count > first.restart_count
    assert later.last_state.terminated.reason == "Error"


async def test_image_pull_failure_then_back_off(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_pod(namespace, _pod("puller", "image-pull-error"))
    seen: list[str] = []

    async def waiting_reason_is(reason: str) -> bool:
        pod = await core.read_namespaced_pod("puller", namespace)
        statuses = pod.status.container_statuses or []
        current = statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else ""
        if current and current not in seen:
            seen.append(current)
        return current == reason and pod.status.phase == "Pending"

    await eventually(lambda: waiting_reason_is("ImagePullBackOff"), within=10, every=0.05)
    assert seen[-1] == "ImagePullBackOff"
    assert "ErrImagePull" in seen


async def test_exiting_container_fails_the_pod(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_pod(namespace, _pod("quitter", "exit-error", restart="Never"))

    async def failed() -> Any:
        pod = await core.read_namespaced_pod("quitter", namespace)
        return pod if pod.status.phase == "Failed" else None

    pod = await eventually(failed, within=10)
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("Error", 1)


async def test_rbac_denies_until_a_role_binding_grants(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    authz = client.AuthorizationV1Api(kube_api)
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    user = f"system:serviceaccount:{namespace}:robot"

    async def can_list_pods() -> bool:
        review = await authz.create_subject_access_review(
            {
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": "list",
                        "resource": "pods",
                    },
                }
            }
        )
        return bool(review.status.allowed)

    assert not await can_list_pods()
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "robot-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
        },
    )
    assert await eventually(can_list_pods, within=5)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is installed by ./dev setup")
async def test_kubectl_works_against_the_kubeconfig(kubeconfig: Path, namespace: str) -> None:
    def kubectl(*args: str) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", *args],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    nodes = await asyncio.to_thread(kubectl, "get", "nodes", "--no-headers")
    assert nodes.split()[:2] == ["sandbox-node-1", "Ready"]
    await asyncio.to_thread(kubectl, "-n", namespace, "create", "serviceaccount", "bot")
    who = f"--as=system:serviceaccount:{namespace}:bot"
    can_i = ["kubectl", f"--kubeconfig={kubeconfig}", "-n", namespace, "auth", "can-i"]
    denied = await asyncio.to_thread(
        subprocess.run, [*can_i, "get", "secrets", who],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert denied.stdout.strip() == "no"
