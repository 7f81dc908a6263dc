"""A simulated kubelet: a Ready Node whose pods move through the statuses a real kubelet reports.

No container runs. The kubelet registers a Node, watches the pods the scheduler binds to it and
writes their status the way a kubelet would: Pending with ``ContainerCreating``, then Running with
a pod IP, ready containers and the Ready/ContainersReady conditions. It confirms graceful deletes.
After a restart it relists and leaves pods that already run alone.

A pod chooses a failure by annotation (``BEHAVIOR_ANNOTATION``):

=====================  ====================================================================
``run`` (default)      Pending/ContainerCreating, then Running and Ready.
``image-pull-error``   Pending with ``ErrImagePull``, then ``ImagePullBackOff``; never runs.
``crash-loop``         Starts but is never ready, then ``CrashLoopBackOff``, restarts growing.
``exit-error``         Starts, then the container exits 1: phase Failed, reason ``Error``.
=====================  ====================================================================

``START_DELAY_ANNOTATION`` (seconds, e.g. ``"2.5"``) overrides the kubelet's start delay per pod.

Example::

    async with ApiClient(configuration) as api:
        kubelet = SimulatedKubelet(api, "sandbox-node-1")
        await kubelet.run()   # until cancelled
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.podnet import Ipam

log = logging.getLogger(__name__)

BEHAVIOR_ANNOTATION = "sandbox.qaas.dev/behavior"
START_DELAY_ANNOTATION = "sandbox.qaas.dev/start-delay"
BEHAVIORS = ("run", "image-pull-error", "crash-loop", "exit-error")
MERGE_PATCH = "application/merge-patch+json"
Pod = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastTransitionTime": _now(),
        "lastProbeTime": None,
    }
    if reason:
        condition["reason"] = reason
    return condition


def _conditions(ready: bool, reason: str = "ContainersNotReady") -> list[dict[str, Any]]:
    return [
        _condition("Initialized", True),
        _condition("Ready", ready, None if ready else reason),
        _condition("ContainersReady", ready, None if ready else reason),
        _condition("PodScheduled", True),
    ]


class SimulatedKubelet:
    """Registers ``node_name`` and drives the status of every pod bound to it."""

    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        node_ip: str = "172.30.0.10",
        pod_cidr: str = "10.244.0.0/24",
        start_delay: float = 0.3,
        crash_backoff: float = 1.0,
        addresses: Ipam | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.start_delay = start_delay
        self.crash_backoff = crash_backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Pod IPs, shared with the sandbox's other kubelets and its PodNetwork (one IPAM).
        self.addresses = addresses if addresses is not None else Ipam()
        self.ready = asyncio.Event()

    # -- the node ---------------------------------------------------------------------------

    async def register(self) -> None:
        """Create (or refresh) the Node: Ready, untainted, with a realistic capacity."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "qaas.dev/simulated": "true",
                },
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        try:
            await self.core.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise
        # The TaintNodesByCondition admission plugin adds a not-ready taint on create; a real
        # kubelet's Ready status makes the node lifecycle controller lift it, which is off here.
        await self.core.patch_node(
            self.node_name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH
        )
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "conditions": [
                {**_condition(kind, False), "reason": f"KubeletHas{reason}",
                 "lastHeartbeatTime": _now()}
                for kind, reason in (
                    ("MemoryPressure", "SufficientMemory"),
                    ("DiskPressure", "NoDiskPressure"),
                    ("PIDPressure", "SufficientPID"),
                )
            ]
            + [{**_condition("Ready", True), "reason": "KubeletReady",
                "lastHeartbeatTime": _now()}],
            "nodeInfo": {
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "containerRuntimeVersion": "simulated://1.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "QaaS simulated node",
                "kernelVersion": "simulated",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }  # fmt: skip
        await self.core.patch_node_status(
            self.node_name, {"status": status}, _content_type=MERGE_PATCH
        )

    # -- the watch --------------------------------------------------------------------------

    async def run(self) -> None:
        """Register the node, then follow its pods until cancelled."""
        await self.register()
        try:
            while True:
                try:
                    version = await self._relist()
                    self.ready.set()
                    await self._watch(version)
                except ApiException as error:
                    if error.status != 410:
                        log.warning("pod watch failed (%s); relisting", error.status)
                        await asyncio.sleep(1)
                except (TimeoutError, OSError) as error:
                    log.warning("pod watch interrupted (%s); relisting", error)
                    await asyncio.sleep(1)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()

    async def _relist(self) -> str:
        response = await self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", _preload_content=False
        )
        listing = await response.json()
        pods: list[Pod] = listing["items"]
        for pod in pods:
            ip = pod.get("status", {}).get("podIP")
            if ip:
                self.addresses.reserve(pod["metadata"]["uid"], ip)
        for pod in pods:
            await self._on_pod("MODIFIED", pod)
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, version: str) -> None:
        async with watch.Watch() as stream:
            events = stream.stream(
                self.core.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={self.node_name}",
                resource_version=version,
                timeout_seconds=120,
            )
            async for event in events:
                await self._on_pod(event["type"], event["raw_object"])

    async def _on_pod(self, kind: str, pod: Pod) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            self._forget(uid)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._forget(uid)
            await self._confirm_delete(pod)
            return
        if uid in self._tasks or not self._needs_driving(pod):
            return
        task = asyncio.create_task(self._drive(pod), name=f"kubelet-pod-{uid}")
        self._tasks[uid] = task
        task.add_done_callback(
            lambda _: self._tasks.pop(uid, None) if self._tasks.get(uid) is task else None
        )

    def _task_done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(uid) is task:
            del self._tasks[uid]

    @staticmethod
    def behavior(pod: Pod) -> str:
        value = pod["metadata"].get("annotations", {}).get(BEHAVIOR_ANNOTATION, "run")
        return value if value in BEHAVIORS else "run"

    def _needs_driving(self, pod: Pod) -> bool:
        status = pod.get("status", {})
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return False
        behavior = self.behavior(pod)
        if phase == "Running" and behavior == "run":
            return False  # already up: a restarted kubelet leaves it alone
        waiting = [
            s.get("state", {}).get("waiting", {}).get("reason")
            for s in status.get("containerStatuses", [])
        ]
        return not (behavior == "image-pull-error" and "ImagePullBackOff" in waiting)

    def _forget(self, uid: str) -> None:
        task = self._tasks.pop(uid, None)
        if task is not None:
            task.cancel()
        self.addresses.release(uid)

    async def _confirm_delete(self, pod: Pod) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            await self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)
        except ApiException as error:
            if error.status not in (404, 409):  # gone already, or a newer pod of that name
                raise

    # -- one pod's life ---------------------------------------------------------------------

    def _allocate_ip(self, uid: str) -> str:
        return self.addresses.allocate(uid, self.pod_cidr)

    def _delay(self, pod: Pod) -> float:
        raw = pod["metadata"].get("annotations", {}).get(START_DELAY_ANNOTATION)
        try:
            return max(0.0, float(raw)) if raw is not None else self.start_delay
        except ValueError:
            return self.start_delay

    async def _drive(self, pod: Pod) -> None:
        try:
            await self._lifecycle(pod)
        except asyncio.CancelledError:
            raise
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("status of pod %s: %s", pod["metadata"]["name"], error.reason)
        except Exception:
            log.exception("simulated kubelet failed on pod %s", pod["metadata"]["name"])

    async def _lifecycle(self, pod: Pod) -> None:
        behavior = self.behavior(pod)
        status = pod.get("status", {})
        started = status.get("startTime") or _now()
        restarts = max(
            [s.get("restartCount", 0) for s in status.get("containerStatuses", [])] or [0]
        )
        if status.get("phase") != "Running":
            await self._set(pod, "Pending", started, waiting=("ContainerCreating", ""))
            await asyncio.sleep(self._delay(pod))
        if behavior == "image-pull-error":
            image = pod["spec"]["containers"][0]["image"]
            message = f'rpc error: code = Unknown desc = failed to pull image "{image}"'
            await self._set(pod, "Pending", started, waiting=("ErrImagePull", message))
            await asyncio.sleep(self._delay(pod))
            await self._set(
                pod,
                "Pending",
                started,
                waiting=("ImagePullBackOff", f'Back-off pulling image "{image}"'),
            )
            return
        ip = self._allocate_ip(pod["metadata"]["uid"])
        # A container that crash-loops dies during start-up: it runs, but is never ready.
        ready = behavior != "crash-loop"
        await self._set(pod, "Running", started, ip=ip, running=True, ready=ready)
        if behavior == "exit-error":
            await asyncio.sleep(self._delay(pod))
            await self._set(pod, "Failed", started, ip=ip, terminated=("Error", 1))
        elif behavior == "crash-loop":
            backoff = self.crash_backoff
            while True:
                await asyncio.sleep(backoff)
                restarts += 1
                reason = f"back-off {backoff:.0f}s restarting failed container"
                await self._set(
                    pod, "Running", started, ip=ip, restarts=restarts,
                    waiting=("CrashLoopBackOff", reason),
                )  # fmt: skip
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
                state: dict[str, Any] = {"running": {"startedAt": _now()}}
            elif terminated:
                state = {"terminated": {"reason": terminated[0], "exitCode": terminated[1],
                                        "startedAt": started, "finishedAt": _now()}}  # fmt: skip
            else:
                assert waiting is not None
                state = {
                    "waiting": {
                        "reason": waiting[0],
                        **({"message": waiting[1]} if waiting[1] else {}),
                    }
                }
            last = (
                {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": _now()}}
                if restarts
                else {}
            )
            statuses.append({
                "name": container["name"],
                "image": container["image"],
                "imageID": "" if waiting and not restarts else f"simulated://{container['image']}",
                "containerID": None if waiting and not restarts else f"simulated://{secrets.token_hex(16)}",
                "ready": is_ready,
                "started": running,
                "restartCount": restarts,
                "state": state,
                "lastState": last,
            })  # fmt: skip
        body: dict[str, Any] = {
            "status": {
                "phase": phase,
                "hostIP": self.node_ip,
                "startTime": started,
                "conditions": _conditions(is_ready),
                "containerStatuses": statuses,
                "podIP": ip,
                "podIPs": [{"ip": ip}] if ip else None,
            }
        }
        meta = pod["metadata"]
        await self.core.patch_namespaced_pod_status(
            meta["name"], meta["namespace"], body, _content_type=MERGE_PATCH
        )
