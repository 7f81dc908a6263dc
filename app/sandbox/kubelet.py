"""The sandbox's kubelet: registers a Node, watches the pods bound to it and gives each a life.

Each pod is one of two kinds, decided once when the kubelet first sees it:

- **process pods** (`app.sandbox.runtime`): every container's image is in the image table
  (`app.sandbox.images`), the pod asks for a process (`images.asks_for_process`), and the
  node runs fewer than ``RuntimeConfig.max_process_pods`` (default 16 per node). Over the cap a
  pod runs simulated, with an Event ``ProcessPodCapReached`` and the annotation
  ``RUNTIME_REASON_ANNOTATION`` saying why (the decision sticks across kubelet restarts).
- **simulated pods** (`app.sandbox.simulated`): everything else, and every pod of a kubelet
  given no ``runtime`` (the supervisor's choice when the sandbox has no pod network).

Deletion is graceful: on ``deletionTimestamp`` a process pod's containers get SIGTERM, SIGKILL
after the grace period, then the kubelet confirms the delete (grace 0), as a kubelet does. After a
restart the kubelet relists: running simulated pods are left alone, process pods start again
(their processes died with the old kubelet), and leftovers of this node's pods are killed
(`app.sandbox.podenv.reap`). With ``serving``, the kubelet serves ``pods/log`` over HTTPS at
``node_ip`` (`app.sandbox.kubelet_server`) and publishes the port in the Node's status.

Example::

    async with ApiClient(configuration) as api:
        kubelet = Kubelet(api, "sandbox-node-1",
                          runtime=RuntimeConfig(ImageTable(), state_dir),
                          serving=Serving(pki_dir))
        await kubelet.run()   # until cancelled
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.images import asks_for_process
from app.sandbox.kubelet_server import KubeletServer
from app.sandbox.logs import ContainerLog, LogStore
from app.sandbox.node import register_node
from app.sandbox.pki import issue_certificate
from app.sandbox.plugins import HostNetwork, PodNetwork, VolumeNotReady
from app.sandbox.podenv import reap
from app.sandbox.runtime import ProcessPod, RuntimeConfig, grace_of
from app.sandbox.simulated import BEHAVIOR_ANNOTATION, START_DELAY_ANNOTATION, Simulation
from app.sandbox.simulated import needs_driving as simulated_needs_driving
from app.sandbox.status import MERGE_PATCH, StatusWriter, emit_event, now, pending_status

__all__ = ["BEHAVIOR_ANNOTATION", "START_DELAY_ANNOTATION", "Kubelet", "Serving"]
log = logging.getLogger(__name__)
RUNTIME_REASON_ANNOTATION = "sandbox.qaas.dev/runtime-reason"
Pod = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Serving:
    """The kubelet's HTTPS endpoint: certificates from the sandbox CA in ``pki_dir``."""

    pki_dir: Path
    port: int = 10250  # 0: any free port


@dataclass
class _Entry:
    pod: Pod
    kind: str  # "process" or "simulated"
    task: asyncio.Task[None] | None = None
    process: ProcessPod | None = None


class Kubelet:
    """Registers ``node_name`` and gives every pod bound to it a (process or simulated) life.

    ``runtime`` None: every pod is simulated. ``network`` None: `HostNetwork` (process pods on
    the host's network, pod IP = ``node_ip``). ``serving`` None: no HTTPS endpoint (port 0).
    ``start_delay``/``crash_backoff`` pace the simulated pods only."""

    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        node_ip: str = "172.30.0.10",
        pod_cidr: str = "10.244.0.0/24",
        start_delay: float = 0.3,
        crash_backoff: float = 1.0,
        runtime: RuntimeConfig | None = None,
        network: PodNetwork | None = None,
        serving: Serving | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.runtime = runtime
        self.network: PodNetwork = network or HostNetwork(node_ip, pod_cidr)
        self.serving = serving
        self.simulation = Simulation(self.core, self.network, node_ip, start_delay, crash_backoff)
        self.logs = LogStore()
        self.server: KubeletServer | None = None
        self.ready = asyncio.Event()
        self._pods: dict[str, _Entry] = {}
        self._ending: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- the watch ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve, register the node, then follow its pods until cancelled."""
        try:
            port = await self._serve() if self.serving else 0
            await register_node(self.core, self.node_name, self.node_ip, self.pod_cidr, port)
            swept = False
            while True:
                try:
                    version = await self._relist(sweep=not swept)
                    swept = True
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
            tasks = [e.task for e in self._pods.values() if e.task] + [*self._ending.values()]
            tasks += list(self._background)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pods.clear()
            self._ending.clear()
            if self.server is not None:
                await self.server.stop()

    async def _serve(self) -> int:
        assert self.serving is not None
        cert, key = await asyncio.to_thread(
            issue_certificate,
            self.serving.pki_dir,
            self.node_name,
            self.serving.pki_dir / "kubelets",
            ips=(self.node_ip,),
        )
        self.server = KubeletServer(
            self.logs,
            host=self.node_ip,
            port=self.serving.port,
            cert=cert,
            key=key,
            ca=self.serving.pki_dir / "ca.crt",
        )
        return await self.server.start()

    async def _relist(self, sweep: bool) -> str:
        response = await self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", _preload_content=False
        )
        listing = await response.json()
        pods: list[Pod] = listing["items"]
        uids = {pod["metadata"]["uid"] for pod in pods}
        if sweep:
            await asyncio.to_thread(self._sweep, uids)
        for uid in [u for u in self._pods if u not in uids and u not in self._ending]:
            self._end(self._pods[uid].pod, graceful=False)  # deleted while the watch was down
        # Pods that have an IP first, so new pods never get an address already in use.
        for pod in pods:
            if (pod.get("status") or {}).get("podIP") and self._kind(pod) == "simulated":
                await self.network.attach(pod, namespace=False)
        for pod in pods:
            await self._on_pod("MODIFIED", pod)
        return str(listing["metadata"]["resourceVersion"])

    def _sweep(self, alive: set[str]) -> None:
        """After a (re)start: kill what is left of this node's process pods; forget gone pods."""
        if self.runtime is None:
            return
        for folder in sorted((self.runtime.state_dir / "pods").glob("*/node")):
            if folder.read_text() != self.node_name:
                continue
            killed = reap(str(folder.parent / "root"))
            if killed:
                log.info("killed %d leftover processes of pod %s", killed, folder.parent.name)
            if folder.parent.name not in alive:
                shutil.rmtree(folder.parent, ignore_errors=True)

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
        meta = pod["metadata"]
        uid = meta["uid"]
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if uid not in self._ending:
                self._end(pod, graceful=kind != "DELETED")
            return
        known = self._pods.get(uid)
        if uid in self._ending or (known is not None and known.kind == "process"):
            return
        if known is not None:  # simulated: drive again only if its task gave up early
            if known.task is not None and known.task.done() and simulated_needs_driving(pod):
                known.task = asyncio.create_task(self._simulate(pod), name=f"pod-{uid}")
            return
        decided = self._kind(pod)
        if decided == "process" and not await self._asks_for_process(pod):
            decided = "simulated"
        if decided == "process" and self._process_count() >= self._cap():
            decided = "simulated"
            await self._over_cap(pod)
        entry = self._pods[uid] = _Entry(pod, decided)
        if decided == "process" and self.runtime is not None:
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                entry.task = asyncio.create_task(self._run_process(pod, entry), name=f"pod-{uid}")
            else:  # done before a kubelet restart: its logs stay readable
                folder = self.runtime.pod_dir(uid) / "logs"
                logs = {
                    c["name"]: ContainerLog(folder / c["name"]) for c in pod["spec"]["containers"]
                }
                self.logs.add(meta["namespace"], meta["name"], uid, logs)
            return
        self.logs.add(meta["namespace"], meta["name"], uid, None)
        if simulated_needs_driving(pod):
            entry.task = asyncio.create_task(self._simulate(pod), name=f"pod-{uid}")

    # -- deciding -------------------------------------------------------------------------------

    def _kind(self, pod: Pod) -> str:
        if self.runtime is None or not self.runtime.images.runs_as_process(pod):
            return "simulated"
        if RUNTIME_REASON_ANNOTATION in (pod["metadata"].get("annotations") or {}):
            return "simulated"
        ids = [
            s.get("containerID") or ""
            for s in (pod.get("status") or {}).get("containerStatuses") or []
        ]
        return "simulated" if any(i.startswith("simulated://") for i in ids) else "process"

    async def _asks_for_process(self, pod: Pod) -> bool:
        assert self.runtime is not None
        try:
            namespace = await self.core.read_namespace(pod["metadata"]["namespace"])
            labels = namespace.metadata.labels or {}
        except ApiException:  # going away: the default decides
            labels = {}
        return asks_for_process(pod, labels, self.runtime.default)

    def _cap(self) -> int:
        return self.runtime.max_process_pods if self.runtime else 0

    def _process_count(self) -> int:
        return sum(
            1
            for e in self._pods.values()
            if e.kind == "process" and e.task is not None and not e.task.done()
        )

    async def _over_cap(self, pod: Pod) -> None:
        meta = pod["metadata"]
        why = f"simulated: node {self.node_name} runs its cap of {self._cap()} process pods"
        log.info("pod %s/%s runs simulated: %s", meta["namespace"], meta["name"], why)
        try:
            await self.core.patch_namespaced_pod(
                meta["name"],
                meta["namespace"],
                {"metadata": {"annotations": {RUNTIME_REASON_ANNOTATION: why}}},
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            log.info("annotation of pod %s not written: %s", meta["name"], error.reason)
        await emit_event(self.core, pod, "ProcessPodCapReached", why, "Warning")

    # -- one pod's life -------------------------------------------------------------------------

    async def _simulate(self, pod: Pod) -> None:
        try:
            await self.simulation.run(pod)
        except asyncio.CancelledError:
            raise
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("status of pod %s: %s", pod["metadata"]["name"], error.reason)
        except Exception:
            log.exception("simulated kubelet failed on pod %s", pod["metadata"]["name"])

    async def _run_process(self, pod: Pod, entry: _Entry) -> None:
        assert self.runtime is not None
        runtime = self.runtime
        writer = StatusWriter(self.core, pod)
        meta = pod["metadata"]
        status = pod.setdefault("status", {})
        status["startTime"] = status.get("startTime") or now()
        pod_dir = runtime.pod_dir(meta["uid"])
        try:
            writer.set(pending_status(pod, self.node_ip, ""))
            address = await self._until_done(
                pod,
                writer,
                "FailedCreatePodSandBox",
                lambda: self.network.attach(pod, namespace=True),
            )
            pod_dir.mkdir(parents=True, exist_ok=True)
            volumes = await self._until_done(
                pod, writer, "FailedMount", lambda: runtime.volumes.resolve(pod, pod_dir)
            )

            def on_event(reason: str, message: str, kind: str) -> None:
                self._later(emit_event(self.core, pod, reason, message, kind))

            entry.process = ProcessPod(
                pod, runtime, address, self.node_ip, volumes, writer.set, on_event
            )
            logs = {c.name: c.log for c in entry.process.containers}
            self.logs.add(meta["namespace"], meta["name"], meta["uid"], logs)
            await entry.process.run()
            await writer.flush()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("process runtime failed on pod %s", meta["name"])
        finally:
            writer.close()

    async def _until_done(
        self, pod: Pod, writer: StatusWriter, reason: str, step: Callable[[], Awaitable[T]]
    ) -> T:
        """Run a set-up step (network, volumes) until it works; meanwhile the pod stays in
        ContainerCreating with the error as message, and one Warning event says why."""
        told = False
        while True:
            try:
                return await step()
            except Exception as error:  # a plug-in's failure: report it, ask again
                message = str(error) or type(error).__name__
                writer.set(pending_status(pod, self.node_ip, message))
                if not told and not isinstance(error, VolumeNotReady):
                    log.warning("pod %s: %s: %s", pod["metadata"]["name"], reason, message)
                if not told:
                    await emit_event(self.core, pod, reason, message, "Warning")
                    told = True
                await asyncio.sleep(2)

    def _later(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _end(self, pod: Pod, *, graceful: bool) -> None:
        """Stop a pod: gracefully if it is being deleted, at once if it is gone already."""
        uid = pod["metadata"]["uid"]
        task = asyncio.create_task(self._ending_of(pod, graceful), name=f"end-{uid}")
        self._ending[uid] = task
        task.add_done_callback(lambda _: self._ending.pop(uid, None))

    async def _ending_of(self, pod: Pod, graceful: bool) -> None:
        meta = pod["metadata"]
        entry = self._pods.get(meta["uid"])
        if entry is not None and entry.task is not None:
            if graceful and entry.process is not None and not entry.task.done():
                await entry.process.terminate(grace_of(pod))
            entry.task.cancel()
            await asyncio.gather(entry.task, return_exceptions=True)
        self._pods.pop(meta["uid"], None)
        self.logs.remove(meta["namespace"], meta["name"], meta["uid"])
        if self.runtime is not None and entry is not None and entry.kind == "process":
            pod_dir = self.runtime.pod_dir(meta["uid"])
            await asyncio.to_thread(reap, str(pod_dir / "root"))
            await asyncio.to_thread(shutil.rmtree, pod_dir, True)
        await self.network.detach(pod)
        if graceful:
            await self._confirm_delete(pod)

    async def _confirm_delete(self, pod: Pod) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            await self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)
        except ApiException as error:
            if error.status not in (404, 409):  # gone already, or a newer pod of that name
                raise


SimulatedKubelet = Kubelet  # the name before process pods existed
