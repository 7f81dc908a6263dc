"""Starting, stopping and killing sandboxes leaves nothing behind; the kubelet survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from app.sandbox.handle import Sandbox, SandboxState
from app.sandbox.kubelet import SimulatedKubelet
from app.sandbox.processes import pid_alive, wait_gone
from tests.helpers import eventually


def _all_pids(state: SandboxState) -> list[int]:
    return [state.supervisor_pid, *state.pids.values()]


def test_second_sandbox_runs_beside_the_first_and_down_stops_everything(
    sandbox: SandboxState, tmp_path: Path
) -> None:
    second = Sandbox(tmp_path / "second")
    state = second.up(progress=lambda _: None, detach=True)
    try:
        assert state.server != sandbox.server
        assert all(pid_alive(pid) for pid in _all_pids(state))
        assert second.state() is not None
    finally:
        assert second.down()
    assert not any(pid_alive(pid) for pid in _all_pids(state))
    assert second.state() is None
    assert not second.down()  # stopping twice is fine and says nothing was running


def test_killing_the_supervisor_takes_its_processes_along(tmp_path: Path) -> None:
    handle = Sandbox(tmp_path / "doomed")
    state = handle.up(progress=lambda _: None, detach=True)
    os.kill(state.supervisor_pid, signal.SIGKILL)
    # No cleanup code runs after SIGKILL: the kernel's parent-death signal does the work.
    for pid in state.pids.values():
        assert wait_gone(pid, 10), f"pid {pid} outlived its supervisor"
    assert handle.state() is None
    assert not handle.down()  # nothing left to stop (and our dead child is reaped)


async def _wait_running(core: client.CoreV1Api, name: str, namespace: str) -> Any:
    async def running() -> Any:
        pod = await core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" else None

    return await eventually(running, within=10)


async def test_kubelet_restart_keeps_running_pods_as_they_are(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    node = f"restart-{namespace}"

    def pod(name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }

    async def run_kubelet() -> tuple[SimulatedKubelet, asyncio.Task[None]]:
        kubelet = SimulatedKubelet(kube_api, node, pod_cidr="10.244.200.0/24")
        task = asyncio.create_task(kubelet.run())
        await asyncio.wait_for(kubelet.ready.wait(), 10)
        return kubelet, task

    try:
        _, first = await run_kubelet()
        await core.create_namespaced_pod(namespace, pod("steady"))
        before = await _wait_running(core, "steady", namespace)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first

        _, second = await run_kubelet()
        await core.create_namespaced_pod(namespace, pod("newcomer"))
        newcomer = await _wait_running(core, "newcomer", namespace)
        after = await core.read_namespaced_pod("steady", namespace)
        assert after.metadata.resource_version == before.metadata.resource_version
        assert newcomer.status.pod_ip != before.status.pod_ip

        # Graceful deletion is confirmed by the (restarted) kubelet.
        await core.delete_namespaced_pod("steady", namespace)

        async def gone() -> bool:
            names = [p.metadata.name for p in (await core.list_namespaced_pod(namespace)).items]
            return "steady" not in names

        await eventually(gone, within=10)
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    finally:
        await core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        await core.delete_node(node)
