"""Readiness, liveness and startup probes of process pods drive ``ready`` and restarts."""

from __future__ import annotations

import socket
from typing import Any

from app.sandbox.processes import free_ports
from tests.sandbox.process_node import ProcessNode, process_node

__all__ = ["process_node"]  # the fixture
FAST = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 1}


def _ready(pod: Any) -> bool:
    conditions = {c.type: c.status for c in pod.status.conditions or []}
    statuses = pod.status.container_statuses or []
    ready = bool(statuses) and statuses[0].ready
    assert conditions.get("Ready") == conditions.get("ContainersReady") == str(ready)
    return ready


async def _flips(node: ProcessNode, name: str, want: bool) -> Any:
    return await node.until(name, lambda p: p.status.phase == "Running" and _ready(p) is want)


async def test_http_get_readiness_follows_the_answer(process_node: ProcessNode) -> None:
    node = process_node
    (port,) = free_ports(1)
    probe = {"httpGet": {"path": "/healthy", "port": "web"}, **FAST}
    manifest = node.pod(
        "web",
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        ports=[{"name": "web", "containerPort": port}],
        readinessProbe=probe,
    )
    pod = await node.create(manifest)
    await node.until_container("web", lambda c: c.state.running is not None)
    await _flips(node, "web", False)  # 404 until the file exists in its working directory
    flag = node.root(pod["uid"]) / "healthy"
    flag.write_text("ok")
    await _flips(node, "web", True)
    flag.unlink()
    await _flips(node, "web", False)
    restarts = (await node.read("web")).status.container_statuses[0].restart_count
    assert restarts == 0  # readiness never restarts


async def test_tcp_socket_readiness_follows_the_listener(process_node: ProcessNode) -> None:
    node = process_node
    (port,) = free_ports(1)
    probe = {"tcpSocket": {"port": port}, **FAST}
    await node.create(node.pod("tcp", ["sleep", "3600"], readinessProbe=probe))
    await _flips(node, "tcp", False)
    # The pod shares the host's network here: a listener of the test stands in for the pod's.
    with socket.create_server(("127.0.0.1", port)):
        await _flips(node, "tcp", True)
    await _flips(node, "tcp", False)


async def test_exec_readiness_runs_in_the_working_directory(process_node: ProcessNode) -> None:
    node = process_node
    probe = {"exec": {"command": ["sh", "-c", "test -f ready-$MARK"]}, **FAST}
    env = [{"name": "MARK", "value": "x"}]
    manifest = node.pod("exec", ["sleep", "3600"], workingDir="/w", env=env, readinessProbe=probe)
    pod = await node.create(manifest)
    await _flips(node, "exec", False)
    (node.root(pod["uid"]) / "w" / "ready-x").touch()
    await _flips(node, "exec", True)


async def test_a_failing_liveness_probe_restarts_the_container(process_node: ProcessNode) -> None:
    node = process_node
    probe = {"exec": {"command": ["test", "-f", "alive"]}, **FAST}
    manifest = node.pod(
        "live",
        ["sh", "-c", "touch alive; exec sleep 3600"],
        livenessProbe=probe,
        terminationGracePeriodSeconds=1,
    )
    pod = await node.create(manifest)
    await node.running_ready("live")
    (node.root(pod["uid"]) / "alive").unlink()
    # The kubelet's first back-off is 10 s: a loaded machine (the suite runs two workers) needs
    # more than the default 15 s bound for the probe, the stop, the back-off and the start.
    restarted = await node.until_container(
        "live", lambda c: c.restart_count == 1 and c.ready, within=60
    )
    terminated = restarted.status.container_statuses[0].last_state.terminated
    assert terminated.exit_code == 128 + 15  # SIGTERM from the kubelet
    events = await node.core.list_namespaced_event(
        node.namespace, field_selector="involvedObject.name=live"
    )
    assert "Unhealthy" in [e.reason for e in events.items]


async def test_a_startup_probe_holds_readiness_back(process_node: ProcessNode) -> None:
    node = process_node
    startup = {"exec": {"command": ["test", "-f", "started"]}, "periodSeconds": 1,
               "failureThreshold": 60}  # fmt: skip
    manifest = node.pod("slow", ["sleep", "3600"], startupProbe=startup)
    pod = await node.create(manifest)
    waiting = await node.until_container("slow", lambda c: c.state.running is not None)
    assert not waiting.status.container_statuses[0].started
    assert not _ready(waiting)
    (node.root(pod["uid"]) / "started").touch()
    started = await _flips(node, "slow", True)
    assert started.status.container_statuses[0].started
