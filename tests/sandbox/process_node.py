"""A node of the test sandbox whose kubelet runs process pods (host network, node IP 127.0.0.1).

Tests import the ``process_node`` fixture from here. The kubelet runs in the test's event loop,
so its processes are children of pytest (they die with it); its HTTPS endpoint listens on a free
loopback port with a certificate from the sandbox's own CA, so the sandbox's apiserver answers
``kubectl logs`` for its pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from app.sandbox.images import HOST_IMAGE, ImageTable
from app.sandbox.kubelet import Kubelet, Serving
from app.sandbox.podenv import marked
from app.sandbox.processes import pid_alive
from app.sandbox.runtime import RuntimeConfig
from tests.helpers import eventually

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is installed by ./dev setup")


def pki_dir_of(kubeconfig: Path) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())
    return Path(config["clusters"][0]["cluster"]["certificate-authority"]).parent


@dataclass
class ProcessNode:
    name: str
    namespace: str
    kubelet: Kubelet
    task: asyncio.Task[None]
    core: client.CoreV1Api
    state_dir: Path
    kubeconfig: Path
    runtime: dict[str, Any]

    async def restart(self) -> None:
        """Stop the kubelet (its processes die) and start a new one for the same node."""
        await stop_kubelet(self.task)
        api = self.core.api_client
        self.kubelet, self.task = await start_kubelet(
            api, self.name, self.state_dir, self.kubeconfig, **self.runtime
        )

    def pod(self, name: str, command: list[str], **container: Any) -> dict[str, Any]:
        """A pod of the host image on this node; extra keys go into the container (or, for
        ``restartPolicy``/``terminationGracePeriodSeconds``/``volumes``, into the spec)."""
        spec: dict[str, Any] = {"nodeName": self.name}
        for key in ("restartPolicy", "terminationGracePeriodSeconds", "volumes"):
            if key in container:
                spec[key] = container.pop(key)
        spec["containers"] = [
            {"name": "main", "image": f"{HOST_IMAGE}:1", "command": command, **container}
        ]
        return {"metadata": {"name": name}, "spec": spec}

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        created = await self.core.create_namespaced_pod(self.namespace, manifest)
        return {"uid": created.metadata.uid, "name": created.metadata.name}

    async def read(self, name: str) -> Any:
        return await self.core.read_namespaced_pod(name, self.namespace)

    async def until(self, name: str, check: Any, within: float = 15) -> Any:
        """Wait until ``check(pod)`` holds; returns the pod."""

        async def probe() -> Any:
            pod = await self.read(name)
            return pod if check(pod) else None

        return await eventually(probe, within=within)

    async def until_container(self, name: str, check: Any, within: float = 15) -> Any:
        """Wait until ``check(status of the first container)`` holds; returns the pod."""
        return await self.until(
            name,
            lambda p: bool(p.status.container_statuses) and check(p.status.container_statuses[0]),
            within,
        )

    async def running_ready(self, name: str, within: float = 15) -> Any:
        return await self.until(
            name,
            lambda p: (
                p.status.phase == "Running"
                and bool(p.status.container_statuses)
                and all(c.ready for c in p.status.container_statuses)
            ),
            within,
        )

    def root(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid / "root"

    def pids(self, uid: str) -> list[int]:
        """Every live process of the pod (found by its QAAS_SANDBOX_ROOT mark)."""
        return [pid for pid, _ in marked(str(self.root(uid)))]

    def kubectl_argv(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        return [KUBECTL, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.kubectl_argv(*args),
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )


async def start_kubelet(
    kube_api: client.ApiClient, name: str, state_dir: Path, kubeconfig: Path, **runtime: Any
) -> tuple[Kubelet, asyncio.Task[None]]:
    """A kubelet with the process runtime for node ``name`` (back-off 0.2 s), until ready."""
    kubelet = Kubelet(
        kube_api,
        name,
        node_ip="127.0.0.1",
        pod_cidr="10.244.201.0/24",
        runtime=RuntimeConfig(ImageTable(), state_dir, **{"backoff": 0.2, **runtime}),
        serving=Serving(pki_dir_of(kubeconfig), port=0),
    )
    task = asyncio.create_task(kubelet.run())
    await asyncio.wait_for(kubelet.ready.wait(), 15)
    # Only pods bound by name run here: the scheduler must not place other tests' pods.
    core = client.CoreV1Api(kube_api)
    await core.patch_node(name, {"spec": {"unschedulable": True}})
    return kubelet, task


async def stop_kubelet(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def process_node_in(
    kube_api: client.ApiClient, namespace: str, state_dir: Path, kubeconfig: Path, **runtime: Any
) -> AsyncIterator[ProcessNode]:
    """A fresh node with a process kubelet; afterwards no pod, node or process of it is left."""
    name = f"proc-{uuid.uuid4().hex[:8]}"
    kubelet, task = await start_kubelet(kube_api, name, state_dir, kubeconfig, **runtime)
    core = client.CoreV1Api(kube_api)
    node = ProcessNode(name, namespace, kubelet, task, core, state_dir, kubeconfig, runtime)
    try:
        yield node
    finally:
        await stop_kubelet(node.task)
        await core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        await core.delete_node(name)

        async def no_leftovers() -> bool:
            return not marked(str(state_dir))

        await eventually(no_leftovers, within=5)  # every process died with the kubelet


@pytest.fixture
async def process_node(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path, kubeconfig: Path
) -> AsyncIterator[ProcessNode]:
    async with process_node_in(kube_api, namespace, tmp_path / "kubelet", kubeconfig) as node:
        yield node


async def all_gone(pids: list[int], within: float = 5) -> bool:
    """Wait until none of ``pids`` lives (zombies count as gone)."""

    async def gone() -> bool:
        return not any(pid_alive(pid) for pid in pids)

    return await eventually(gone, within=within)


def elapsed_since(start: float) -> float:
    return round(time.monotonic() - start, 2)
