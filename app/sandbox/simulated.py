"""Simulated pods: no process runs; the kubelet writes the statuses a real one would report.

Pending with ``ContainerCreating``, then Running with a pod IP (from the `PodNetwork`, without a
namespace), ready containers and the Ready/ContainersReady conditions. A pod chooses a failure by
annotation (``BEHAVIOR_ANNOTATION``):

=====================  ====================================================================
``run`` (default)      Pending/ContainerCreating, then Running and Ready.
``image-pull-error``   Pending with ``ErrImagePull``, then ``ImagePullBackOff``; never runs.
``crash-loop``         Starts but is never ready, then ``CrashLoopBackOff``, restarts growing.
``exit-error``         Starts, then the container exits 1: phase Failed, reason ``Error``.
=====================  ====================================================================

``START_DELAY_ANNOTATION`` (seconds, e.g. ``"2.5"``) overrides the kubelet's start delay per pod.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from kubernetes_asyncio import client

from app.sandbox.plugins import PodNetwork
from app.sandbox.status import conditions, now, patch_status

BEHAVIOR_ANNOTATION = "sandbox.qaas.dev/behavior"
START_DELAY_ANNOTATION = "sandbox.qaas.dev/start-delay"
BEHAVIORS = ("run", "image-pull-error", "crash-loop", "exit-error")
Pod = dict[str, Any]


def behavior(pod: Pod) -> str:
    value = (pod["metadata"].get("annotations") or {}).get(BEHAVIOR_ANNOTATION, "run")
    return value if value in BEHAVIORS else "run"


def needs_driving(pod: Pod) -> bool:
    """False for a pod whose simulated life is over or already in its final state."""
    status = pod.get("status", {})
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return False
    kind = behavior(pod)
    if phase == "Running" and kind == "run":
        return False  # already up: a restarted kubelet leaves it alone
    waiting = [
        s.get("state", {}).get("waiting", {}).get("reason")
        for s in status.get("containerStatuses", [])
    ]
    return not (kind == "image-pull-error" and "ImagePullBackOff" in waiting)


class Simulation:
    """Drives one simulated pod's status until its behaviour is played out."""

    def __init__(
        self,
        core: client.CoreV1Api,
        network: PodNetwork,
        node_ip: str,
        start_delay: float,
        crash_backoff: float,
    ) -> None:
        self.core = core
        self.network = network
        self.node_ip = node_ip
        self.start_delay = start_delay
        self.crash_backoff = crash_backoff

    def delay(self, pod: Pod) -> float:
        raw = (pod["metadata"].get("annotations") or {}).get(START_DELAY_ANNOTATION)
        try:
            return max(0.0, float(raw)) if raw is not None else self.start_delay
        except ValueError:
            return self.start_delay

    async def run(self, pod: Pod) -> None:
        kind = behavior(pod)
        status = pod.get("status", {})
        started = status.get("startTime") or now()
        restarts = max(
            [s.get("restartCount", 0) for s in status.get("containerStatuses", [])] or [0]
        )
        if status.get("phase") != "Running":
            await self._set(pod, "Pending", started, waiting=("ContainerCreating", ""))
            await asyncio.sleep(self.delay(pod))
        if kind == "image-pull-error":
            image = pod["spec"]["containers"][0]["image"]
            message = f'rpc error: code = Unknown desc = failed to pull image "{image}"'
            await self._set(pod, "Pending", started, waiting=("ErrImagePull", message))
            await asyncio.sleep(self.delay(pod))
            await self._set(
                pod,
                "Pending",
                started,
                waiting=("ImagePullBackOff", f'Back-off pulling image "{image}"'),
            )
            return
        ip = (await self.network.attach(pod, namespace=False)).ip
        # A container that crash-loops dies during start-up: it runs, but is never ready.
        ready = kind != "crash-loop"
        await self._set(pod, "Running", started, ip=ip, running=True, ready=ready)
        if kind == "exit-error":
            await asyncio.sleep(self.delay(pod))
            await self._set(pod, "Failed", started, ip=ip, terminated=("Error", 1))
        elif kind == "crash-loop":
            backoff = self.crash_backoff
            while True:
                await asyncio.sleep(backoff)
                restarts += 1
                reason = f"back-off {backoff:.0f}s restarting failed container"
                await self._set(
                    pod,
                    "Running",
                    started,
                    ip=ip,
                    restarts=restarts,
                    waiting=("CrashLoopBackOff", reason),
                )
                backoff = min(backoff * 2, 30 * self.crash_backoff)

    async def _set(
        self,
        pod: Pod,
        phase: str,
        started: str,
        *,
        ip: str | None = None,
        running: bool = False,
        ready: bool | None = None,
        waiting: tuple[str, str] | None = None,
        terminated: tuple[str, int] | None = None,
        restarts: int = 0,
    ) -> None:
        is_ready = running if ready is None else ready
        statuses = []
        for container in pod["spec"]["containers"]:
            if running:
                state: dict[str, Any] = {"running": {"startedAt": now()}}
            elif terminated:
                state = {
                    "terminated": {
                        "reason": terminated[0],
                        "exitCode": terminated[1],
                        "startedAt": started,
                        "finishedAt": now(),
                    }
                }
            else:
                assert waiting is not None
                state = {
                    "waiting": {
                        "reason": waiting[0],
                        **({"message": waiting[1]} if waiting[1] else {}),
                    }
                }
            last = (
                {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": now()}}
                if restarts
                else {}
            )
            statuses.append(
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": ""
                    if waiting and not restarts
                    else f"simulated://{container['image']}",
                    "containerID": None
                    if waiting and not restarts
                    else f"simulated://{secrets.token_hex(16)}",
                    "ready": is_ready,
                    "started": running,
                    "restartCount": restarts,
                    "state": state,
                    "lastState": last,
                }
            )
        await patch_status(
            self.core,
            pod,
            {
                "phase": phase,
                "hostIP": self.node_ip,
                "startTime": started,
                "conditions": conditions(is_ready),
                "containerStatuses": statuses,
                "podIP": ip,
                "podIPs": [{"ip": ip}] if ip else None,
            },
        )
