"""A sandbox killed with SIGKILL while its kubelet runs process pods leaves nothing behind once
the next `sandbox up` has run: no process, network namespace, link, route or nftables table.

Unlike tests/sandbox/test_podnet.py, which attaches a namespace by hand, the pods here are made
through the API and run by the sandbox's own kubelet: a QNM stand-in (a direct child of the
kubelet) and a shell that leaves a grandchild (which the parent-death signal does not reach).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from app.sandbox.handle import Sandbox, SandboxState
from app.sandbox.processes import wait_gone
from app.sandbox.slots import Slot, holder, leftovers
from tests.helpers import eventually, sandbox_processes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("node") is None,
    reason="process pods need root, nftables and Node.js (./dev setup)",
)


def _pod(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", **container}]}}


async def _run_pods(kubeconfig: Path) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        shell = {"image": "qaas.dev/sandbox-host:1",
                 "command": ["sh", "-c", "sleep 3600 & exec sleep 3600"]}  # fmt: skip
        qnm = {"image": "narayanprusty/qnm:latest",
               "env": [{"name": "ROLE", "value": "coordinator"},
                       {"name": "IP", "value": "10.96.0.10"}]}  # fmt: skip
        for name, container in (("shell", shell), ("qnm", qnm)):
            await core.create_namespaced_pod("default", _pod(name, container))

        async def running() -> bool:
            pods = (await core.list_namespaced_pod("default")).items
            return len(pods) == 2 and all(p.status.phase == "Running" for p in pods)

        await eventually(running, within=60)


def _left_unclaimed(slot: Slot) -> list[str]:
    """What is left of ``slot`` once nobody holds it. A slot freed by the kill may be claimed
    at once by a sandbox of another test run on this machine: its objects are its own."""
    return [] if holder(slot) is not None else leftovers(slot)


async def test_kill_9_with_process_pods_then_up_leaves_nothing(tmp_path: Path) -> None:
    handle = Sandbox(tmp_path / "doomed")
    state: SandboxState = await asyncio.to_thread(
        handle.up, lambda _: None, detach=True, runtime="process"
    )
    slot = Slot(int(state.raw["slot"]))
    again: SandboxState | None = None
    try:
        await _run_pods(state.kubeconfig)

        async def three_processes() -> bool:  # the shell, its background sleep, the stand-in
            return len(sandbox_processes(f"{handle.state_dir.resolve()}/")) >= 3

        await eventually(three_processes, within=30)
        namespaces = [item for item in leftovers(slot) if item.startswith("netns ")]
        assert len(namespaces) == 2, namespaces

        os.kill(state.supervisor_pid, signal.SIGKILL)
        assert await asyncio.to_thread(wait_gone, state.supervisor_pid, 10)
        # The kernel killed the direct children; the shell's own child may outlive them.
        again = await asyncio.to_thread(handle.up, lambda _: None, detach=True)

        async def old_ones_gone() -> bool:  # the new sandbox has no pods of its own yet
            return not sandbox_processes(f"{handle.state_dir.resolve()}/")

        await eventually(old_ones_gone, within=10)
        assert not [item for item in leftovers(slot) if item in namespaces]
    finally:
        await asyncio.to_thread(handle.down)
    assert _left_unclaimed(slot) == []
    if again is not None:
        assert _left_unclaimed(Slot(int(again.raw["slot"]))) == []
    assert sandbox_processes(f"{handle.state_dir.resolve()}/") == []
