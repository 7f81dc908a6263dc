"""Writing pod status as a kubelet does: conditions, and one patch in flight per pod.

`conditions` builds the four pod conditions. `StatusWriter` is what a process pod's containers
report to: each change sets the status the pod should show; a single task per pod patches it,
always with the latest wanted status, so a burst of changes (a container exits, its probe
stops, the pod phase moves) becomes one or two writes, never an out-of-order one. A pod that is
gone (404) or replaced by a pod of the same name (422: the uid differs) stops the writer quietly.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
Pod = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str | None = None, since: str | None = None) -> Pod:
    entry: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastTransitionTime": since or now(),
        "lastProbeTime": None,
    }
    if reason:
        entry["reason"] = reason
    return entry


def conditions(
    ready: bool, reason: str = "ContainersNotReady", previous: list[Pod] | None = None
) -> list[Pod]:
    """Initialized, Ready, ContainersReady and PodScheduled; a condition that keeps its status
    keeps its ``lastTransitionTime`` from ``previous``."""
    before = {c["type"]: c for c in previous or []}

    def make(kind: str, ok: bool, why: str | None) -> Pod:
        old = before.get(kind)
        same = old is not None and old["status"] == ("True" if ok else "False")
        return condition(kind, ok, why, old["lastTransitionTime"] if same and old else None)

    return [
        make("Initialized", True, None),
        make("Ready", ready, None if ready else reason),
        make("ContainersReady", ready, None if ready else reason),
        make("PodScheduled", True, None),
    ]


def pending_status(pod: Pod, node_ip: str, message: str) -> Pod:
    """A pod being set up (network, volumes): Pending, its containers ContainerCreating."""
    waiting = {"reason": "ContainerCreating", **({"message": message} if message else {})}
    return {
        "phase": "Pending",
        "hostIP": node_ip,
        "startTime": pod["status"]["startTime"],
        "conditions": conditions(False),
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "containerID": None,
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": waiting},
                "lastState": {},
            }
            for c in pod["spec"]["containers"]
        ],
    }


async def patch_status(core: client.CoreV1Api, pod: Pod, status: Pod) -> None:
    """Merge-patch the status of ``pod``; the uid in the patch makes the apiserver refuse (422)
    a newer pod of the same name (a StatefulSet's), which must never get this pod's status."""
    meta = pod["metadata"]
    body = {"metadata": {"uid": meta["uid"]}, "status": status}
    await core.patch_namespaced_pod_status(
        meta["name"], meta["namespace"], body, _content_type=MERGE_PATCH
    )


class StatusWriter:
    """The latest status a pod should show, written by one task at a time."""

    def __init__(self, core: client.CoreV1Api, pod: Pod) -> None:
        self.core = core
        self.pod = pod
        self.gone = False
        self._wanted: Pod | None = None
        self._written: Pod | None = None
        self._task: asyncio.Task[None] | None = None

    def set(self, status: Pod) -> None:
        self._wanted = status
        if not self.gone and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._write(), name="pod-status")

    async def flush(self) -> None:
        """Return once the latest wanted status is written (or the pod is gone)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _write(self) -> None:
        while not self.gone and self._wanted is not None and self._wanted != self._written:
            status = self._wanted
            try:
                await patch_status(self.core, self.pod, status)
                self._written = status
            except ApiException as error:
                if error.status in (404, 409, 422):  # gone, or replaced by a namesake
                    self.gone = True
                    if error.status == 422:
                        log.info(
                            "status of pod %s refused: %s", self.pod["metadata"]["name"], error.body
                        )
                    return
                log.warning("status of pod %s: %s", self.pod["metadata"]["name"], error.reason)
                await asyncio.sleep(1)
            except (TimeoutError, OSError) as error:
                log.warning("status of pod %s: %s", self.pod["metadata"]["name"], error)
                await asyncio.sleep(1)


async def emit_event(
    core: client.CoreV1Api, pod: Pod, reason: str, message: str, kind: str = "Normal"
) -> None:
    """Record an Event about ``pod`` from the kubelet, as ``kubectl describe`` shows them."""
    meta = pod["metadata"]
    stamp = now()
    event = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        await core.create_namespaced_event(meta["namespace"], event)
    except (ApiException, OSError, TimeoutError) as error:
        log.info("event %s for pod %s not recorded: %s", reason, meta["name"], error)
