"""Process pods: containers run as local processes, restart with back-off, end gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from kubernetes_asyncio import client

from app.sandbox.kubelet import RUNTIME_REASON_ANNOTATION
from app.sandbox.podenv import ROOT_VARIABLE
from app.sandbox.status import StatusWriter
from tests.helpers import eventually
from tests.sandbox.process_node import (
    ProcessNode,
    all_gone,
    elapsed_since,
    process_node,
    process_node_in,
    stop_kubelet,
)

__all__ = ["process_node"]  # the fixture
SLEEPER = ["sh", "-c", "echo hello; sleep 3600"]


async def test_a_host_image_pod_runs_as_a_process_and_becomes_ready(
    process_node: ProcessNode,
) -> None:
    node = process_node
    started = time.monotonic()
    pod = await node.create(node.pod("hello", SLEEPER))
    ready = await node.running_ready("hello")
    print(f"process pod create -> Running+Ready in {elapsed_since(started)}s")
    assert ready.status.pod_ip == "127.0.0.1"  # host network until a PodNetwork is plugged in
    assert ready.status.host_ip == "127.0.0.1"
    status = ready.status.container_statuses[0]
    assert status.state.running is not None
    assert status.restart_count == 0
    assert status.container_id.startswith("sandbox://")
    conditions = {c.type: c.status for c in ready.status.conditions}
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    pids = node.pids(pod["uid"])
    assert pids, "no process carries the pod's root"
    # The container is a session of its own: signals reach its whole process group.
    assert all(os.getsid(pid) == os.getsid(pids[0]) != os.getsid(0) for pid in pids)


async def test_env_fieldrefs_expansion_working_dir_and_empty_dir(
    process_node: ProcessNode,
) -> None:
    node = process_node
    # $(VAR) in args is the kubelet's expansion (the shell sees the results as plain words).
    script = 'printf "%s|" "$@" "$MY_NAME/$MY_NS" "$MY_IP" > out.txt; sleep 3600'
    manifest = node.pod(
        "env",
        ["sh", "-c", script],
        args=["sh", "$(GREETING)", "$$(LITERAL)", "$(NOPE)"],
        workingDir="/data/work",
        env=[
            {"name": "GREETING", "value": "hi-$(MY_UNKNOWN)"},
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        volumeMounts=[{"name": "scratch", "mountPath": "/data"}],
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    pod = await node.create(manifest)
    await node.running_ready("env")
    root = node.root(pod["uid"])
    assert (root / "data").is_symlink()
    volume = root.parent / "volumes" / "scratch"
    assert (root / "data").resolve() == volume.resolve()
    out = volume / "work" / "out.txt"

    async def written() -> str | None:
        return out.read_text() if out.exists() and out.read_text() else None

    text = await eventually(written)
    assert text == f"hi-$(MY_UNKNOWN)|$(LITERAL)|$(NOPE)|env/{node.namespace}|127.0.0.1|"


async def test_a_crashing_container_backs_off_with_growing_restarts(
    process_node: ProcessNode,
) -> None:
    node = process_node
    await node.create(node.pod("crash", ["sh", "-c", "echo boom; exit 1"]))

    def crash_looping(status: client.V1ContainerStatus) -> bool:
        waiting = status.state.waiting
        return bool(status.restart_count >= 2 and waiting and waiting.reason == "CrashLoopBackOff")

    pod = await node.until_container("crash", crash_looping)
    status = pod.status.container_statuses[0]
    assert "restarting failed container=main" in status.state.waiting.message
    assert status.last_state.terminated.exit_code == 1
    assert status.last_state.terminated.reason == "Error"
    assert pod.status.phase == "Running"  # restartPolicy Always: never done
    assert not status.ready
    later = await node.until_container("crash", lambda c: c.restart_count > status.restart_count)
    assert later.status.container_statuses[0].last_state.terminated.exit_code == 1


async def test_killing_the_process_restarts_the_container(process_node: ProcessNode) -> None:
    node = process_node
    pod = await node.create(node.pod("victim", ["sleep", "3600"]))
    await node.running_ready("victim")
    (pid,) = node.pids(pod["uid"])
    os.kill(pid, signal.SIGKILL)
    restarted = await node.until_container("victim", lambda c: c.restart_count == 1 and c.ready)
    last = restarted.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 128 + signal.SIGKILL
    assert node.pids(pod["uid"]) not in ([], [pid])


async def test_restart_policies_end_in_succeeded_or_failed(process_node: ProcessNode) -> None:
    node = process_node
    await node.create(node.pod("ok", ["true"], restartPolicy="Never"))
    await node.create(node.pod("bad", ["sh", "-c", "exit 3"], restartPolicy="Never"))
    await node.create(
        node.pod(
            "retry",
            ["sh", "-c", "test -f ran && exit 0; touch ran; exit 2"],
            restartPolicy="OnFailure",
        )
    )
    ok = await node.until("ok", lambda p: p.status.phase == "Succeeded")
    assert ok.status.container_statuses[0].state.terminated.reason == "Completed"
    bad = await node.until("bad", lambda p: p.status.phase == "Failed")
    assert bad.status.container_statuses[0].state.terminated.exit_code == 3
    assert bad.status.container_statuses[0].restart_count == 0
    retry = await node.until("retry", lambda p: p.status.phase == "Succeeded")
    assert retry.status.container_statuses[0].restart_count == 1
    assert retry.status.container_statuses[0].last_state.terminated.exit_code == 2


async def test_a_missing_binary_is_a_start_error_that_backs_off(process_node: ProcessNode) -> None:
    node = process_node
    await node.create(node.pod("nobin", ["/nonexistent/binary"]))
    pod = await node.until_container("nobin", lambda c: c.restart_count >= 1)
    last = pod.status.container_statuses[0].last_state.terminated
    assert (last.exit_code, last.reason) == (128, "StartError")


async def test_deletion_sends_sigterm_to_the_process_group(
    process_node: ProcessNode, tmp_path: Path
) -> None:
    node = process_node
    marker = tmp_path / "got-term"
    script = f"trap 'echo bye > {marker}; exit 0' TERM; sleep 3600 & wait"
    pod = await node.create(node.pod("polite", ["sh", "-c", script]))
    await node.running_ready("polite")
    pids = node.pids(pod["uid"])
    started = time.monotonic()
    await node.core.delete_namespaced_pod("polite", node.namespace)  # grace 30 s
    await _gone(node, "polite", within=10)
    assert time.monotonic() - started < 10, "a TERM-handling process should not wait for KILL"
    assert marker.read_text() == "bye\n"
    assert await all_gone(pids)
    assert not node.root(pod["uid"]).parent.exists()


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    process_node: ProcessNode,
) -> None:
    node = process_node
    script = "trap '' TERM; while true; do sleep 0.2; done"
    manifest = node.pod("stubborn", ["sh", "-c", script], terminationGracePeriodSeconds=2)
    pod = await node.create(manifest)
    await node.running_ready("stubborn")
    (shell,) = [pid for pid in node.pids(pod["uid"]) if os.getpgid(pid) == pid]
    started = time.monotonic()
    await node.core.delete_namespaced_pod("stubborn", node.namespace)
    await _gone(node, "stubborn", within=10)
    # The shell ignores TERM: only the KILL at the end of the 2 s grace period ends it.
    assert time.monotonic() - started >= 2
    assert await all_gone([shell])


async def test_processes_die_when_the_kubelet_task_is_cancelled(
    process_node: ProcessNode,
) -> None:
    node = process_node
    pod = await node.create(node.pod("orphan", SLEEPER))
    await node.running_ready("orphan")
    pids = node.pids(pod["uid"])
    assert len(pids) == 2  # sh and its sleep
    await stop_kubelet(node.task)
    assert await all_gone(pids)


async def test_pods_over_the_cap_run_simulated(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path, kubeconfig: Path
) -> None:
    async with process_node_in(
        kube_api, namespace, tmp_path, kubeconfig, max_process_pods=1
    ) as node:
        first = await node.create(node.pod("first", ["sleep", "3600"]))
        await node.running_ready("first")
        second = await node.create(node.pod("second", ["sleep", "3600"]))
        pod = await node.running_ready("second")
        assert pod.status.container_statuses[0].container_id.startswith("simulated://")
        assert "cap of 1" in pod.metadata.annotations[RUNTIME_REASON_ANNOTATION]
        assert node.pids(first["uid"])
        assert not node.pids(second["uid"])
        events = await node.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=second"
        )
        assert [e.reason for e in events.items] == ["ProcessPodCapReached"]


async def test_a_restarted_kubelet_runs_its_pods_again_and_kills_leftovers(
    process_node: ProcessNode,
) -> None:
    node = process_node
    pod = await node.create(node.pod("steady", SLEEPER))
    before = await node.running_ready("steady")
    old_pids = node.pids(pod["uid"])
    # What a crashed kubelet leaves: a marked process of one of its pods that no longer exists.
    stale = node.state_dir / "pods" / "00000000-dead"
    (stale / "root").mkdir(parents=True)
    (stale / "node").write_text(node.name)
    env = {"PATH": os.environ["PATH"], ROOT_VARIABLE: str(stale / "root")}
    orphan = await asyncio.create_subprocess_exec("sleep", "3600", env=env, start_new_session=True)
    try:
        await node.restart()
        assert await all_gone([orphan.pid])
        assert not stale.exists()
        assert await all_gone(old_pids)
        old_id = before.status.container_statuses[0].container_id
        again = await node.until_container("steady", lambda c: c.ready and c.container_id != old_id)
        assert again.status.container_statuses[0].state.running is not None
        assert node.pids(pod["uid"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            orphan.kill()
        await orphan.wait()


async def _gone(node: ProcessNode, name: str, within: float) -> None:
    async def gone() -> bool:
        pods = await node.core.list_namespaced_pod(node.namespace)
        return name not in [p.metadata.name for p in pods.items]

    await eventually(gone, within=within)


async def test_a_status_write_never_lands_on_a_newer_pod_of_the_same_name(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    manifest = {
        "metadata": {"name": "same"},
        "spec": {"nodeName": "no-kubelet-here", "containers": [{"name": "c", "image": "busybox"}]},
    }
    old = await core.create_namespaced_pod(namespace, manifest)
    await core.delete_namespaced_pod("same", namespace, grace_period_seconds=0)
    await core.create_namespaced_pod(namespace, manifest)  # a StatefulSet's way: same name
    meta = {"name": "same", "namespace": namespace, "uid": old.metadata.uid}
    writer = StatusWriter(core, {"metadata": meta})
    writer.set({"phase": "Failed"})
    await writer.flush()
    assert writer.gone
    assert (await core.read_namespaced_pod("same", namespace)).status.phase == "Pending"


async def test_a_volume_that_cannot_be_provided_keeps_the_pod_creating(
    process_node: ProcessNode,
) -> None:
    node = process_node
    claim = {"name": "data", "persistentVolumeClaim": {"claimName": "nowhere"}}
    manifest = node.pod("claimant", ["sleep", "3600"], volumes=[claim])
    await node.create(manifest)
    pod = await node.until_container(
        "claimant", lambda c: c.state.waiting and "claim" in (c.state.waiting.message or "")
    )
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    events = await node.core.list_namespaced_event(
        node.namespace, field_selector="involvedObject.name=claimant"
    )
    assert [e.reason for e in events.items] == ["FailedMount"]
