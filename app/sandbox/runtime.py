"""The process runtime: a pod's containers as local processes, restarted and probed like a kubelet.

A `ProcessPod` gets an address from the `PodNetwork` (and a network namespace), its volumes from
the `VolumeResolver`, then runs each container (`Container`) as a process (`podenv.spawn`: the
command of the image table, env and ``$(VAR)`` expansion, working directory under the pod's
root, stdout/stderr into the container's `ContainerLog`).

A container that exits is restarted per ``restartPolicy`` (Always; OnFailure when the exit code
is not 0; Never) after the kubelet's back-off: ``backoff`` seconds (10 in Kubernetes) doubling up
to 30 times that (300 s), reset once a container ran for twice that cap. Meanwhile it shows
``waiting: CrashLoopBackOff`` and ``lastState.terminated`` (exit code, ``Completed``/``Error``);
``restartCount`` grows when the next instance starts. When every container is done for good the
pod is ``Succeeded`` (all exit 0) or ``Failed``. An exit by signal N reads as exit code 128+N.

Probes (`app.sandbox.probes`): a startup probe gates the others; readiness sets ``ready`` (a
container without one is ready once running); a liveness or startup failure kills the container,
which then restarts as above. Ending: `ProcessPod.terminate` sends SIGTERM to each container's
process group and SIGKILL after the grace period; a cancelled pod SIGKILLs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.sandbox.images import ImageError, ImageTable
from app.sandbox.logs import DEFAULT_CAP, ContainerLog
from app.sandbox.plugins import EmptyDirs, PodAddress, VolumeResolver
from app.sandbox.podenv import container_env, expand, prepare_root, signal_group, spawn
from app.sandbox.probes import Prober, ProbeTarget
from app.sandbox.status import conditions, now

log = logging.getLogger(__name__)
Pod = dict[str, Any]
DEFAULT_GRACE = 30.0


@dataclass
class RuntimeConfig:
    """How the kubelet runs process pods (the kubelet's arguments for its runtime)."""

    images: ImageTable
    state_dir: Path  # pods live in <state_dir>/pods/<uid>
    volumes: VolumeResolver = field(default_factory=EmptyDirs)
    backoff: float = 10.0  # the first restart back-off; 30x is the cap (10 s -> 300 s)
    max_process_pods: int = 16  # per node; more pods of table images run simulated
    default: str = "process"  # or "simulated": for pods and namespaces that do not say
    log_cap: int = DEFAULT_CAP

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid


def grace_of(pod: Pod) -> float:
    meta, spec = pod["metadata"], pod["spec"]
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        spec.get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return float(value)
    return DEFAULT_GRACE


class Container:
    """One container of a process pod: its instances, restarts, probes and status."""

    def __init__(self, pod: ProcessPod, spec: dict[str, Any], previous: dict[str, Any]) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.log = ContainerLog(pod.dir / "logs" / self.name, pod.config.log_cap)
        self.restarts = int(previous.get("restartCount", 0))
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = previous.get("lastState") or {}
        self.container_id: str | None = None
        self.ready = self.started = self.done = False
        self.proc: asyncio.subprocess.Process | None = None
        self._probes: list[asyncio.Task[None]] = []
        self._killing: asyncio.Task[None] | None = None

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": f"sandbox://{self.spec['image']}",
            "containerID": self.container_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }

    def _restarts_after(self, code: int) -> bool:
        policy = self.pod.pod["spec"].get("restartPolicy") or "Always"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def run(self) -> None:
        cap = 30 * self.pod.config.backoff
        delay = self.pod.config.backoff
        while True:
            began = time.monotonic()
            code = await self._instance()
            if self.pod.terminating:
                return
            if not self._restarts_after(code):
                self.done = True
                self.pod.changed()
                return
            if time.monotonic() - began > 2 * cap:
                delay = self.pod.config.backoff
            meta = self.pod.pod["metadata"]
            self.last_state = {"terminated": self.state["terminated"]}
            self.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": (
                        f"back-off {delay:g}s restarting failed container={self.name} "
                        f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"
                    ),
                }
            }
            self.pod.changed()
            await asyncio.sleep(delay)
            delay = min(2 * delay, cap)
            self.restarts += 1

    def _argv_env(self) -> tuple[list[str], dict[str, str], Path]:
        pod = self.pod
        workdir = prepare_root(pod.root, self.spec, pod.volumes)
        env = container_env(
            pod.pod, self.spec, pod_ip=pod.address.ip, host_ip=pod.node_ip, root=pod.root
        )
        argv = [expand(arg, env) for arg in pod.config.images.command(self.spec)]
        return argv, env, workdir

    async def _instance(self) -> int:
        """Run one instance to its end; returns its exit code (128 when it did not start)."""
        started_at = now()
        self.log.new_instance()
        try:
            argv, env, workdir = self._argv_env()
            self.proc = proc = await spawn(argv, env=env, cwd=workdir, netns=self.pod.address.netns)
        except (OSError, ImageError) as error:
            self.log.write("stderr", f"sandbox: cannot start: {error}\n".encode())
            self.log.end_instance()
            self.container_id = None
            self._terminated(128, "StartError", started_at, message=str(error))
            return 128
        self.container_id = f"sandbox://{proc.pid}-{secrets.token_hex(6)}"
        self.state = {"running": {"startedAt": started_at}}
        pumps = [
            asyncio.create_task(self._pump(stream, reader))
            for stream, reader in (("stdout", proc.stdout), ("stderr", proc.stderr))
            if reader is not None
        ]
        self._start_probes(env, workdir)
        self.pod.changed()
        try:
            returncode = await proc.wait()
        finally:
            for task in self._probes:
                task.cancel()
            signal_group(proc.pid, signal.SIGKILL)  # what the container left behind goes too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps, return_exceptions=True), 2)
            self.log.end_instance()
        code = 128 - returncode if returncode < 0 else returncode
        self._terminated(code, "Completed" if code == 0 else "Error", started_at)
        return code

    def _terminated(self, code: int, reason: str, started_at: str, message: str = "") -> None:
        self.ready = self.started = False
        self.proc = None
        state: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now(),
            "containerID": self.container_id,
        }
        if message:
            state["message"] = message
        self.state = {"terminated": state}
        self.pod.changed()

    async def _pump(self, stream: str, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(65536):
            self.log.write(stream, chunk)

    # -- probes ---------------------------------------------------------------------------------

    def _start_probes(self, env: Mapping[str, str], workdir: Path) -> None:
        ports = {
            p["name"]: int(p["containerPort"])
            for p in self.spec.get("ports") or []
            if p.get("name")
        }
        target = ProbeTarget(
            self.pod.address.ip, self.pod.node_ip, ports, env, workdir, self.pod.address.netns
        )
        readiness, liveness = self.spec.get("readinessProbe"), self.spec.get("livenessProbe")
        startup = self.spec.get("startupProbe")
        self._probes = []

        def run(kind: str, probe: dict[str, Any], react: Callable[[bool, str], None]) -> None:
            prober = Prober(kind, probe, target, react)
            self._probes.append(asyncio.create_task(prober.run(), name=f"{kind}-{self.name}"))

        def after_start() -> None:
            self.started = True
            self.ready = readiness is None
            if readiness is not None:
                run("readiness", readiness, on_readiness)
            if liveness is not None:
                run("liveness", liveness, on_liveness)
            self.pod.changed()

        def on_startup(ok: bool, message: str) -> None:
            if ok:
                self._probes.pop(0).cancel()
                after_start()
            else:
                self._kill(message)

        def on_readiness(ok: bool, message: str) -> None:
            self.ready = ok
            if not ok:
                self.pod.event("Unhealthy", message, "Warning")
            self.pod.changed()

        def on_liveness(ok: bool, message: str) -> None:
            if not ok:
                self._kill(message)

        if startup is not None:
            run("startup", startup, on_startup)
        else:
            after_start()

    def _kill(self, message: str) -> None:
        """A failed liveness/startup probe: stop this instance (it restarts per policy)."""
        self.pod.event("Unhealthy", message, "Warning")
        self.pod.event("Killing", f"Container {self.name} failed a probe, will be restarted")
        if self.proc is not None and (self._killing is None or self._killing.done()):
            self._killing = asyncio.create_task(self.stop(grace_of(self.pod.pod)))

    async def stop(self, grace: float) -> None:
        """SIGTERM to the container's process group, SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())

    def kill(self) -> None:
        if self.proc is not None:
            signal_group(self.proc.pid, signal.SIGKILL)


class ProcessPod:
    """A pod whose containers run as processes; reports through ``on_change(status)``."""

    def __init__(
        self,
        pod: Pod,
        config: RuntimeConfig,
        address: PodAddress,
        node_ip: str,
        volumes: Mapping[str, Path],
        on_change: Callable[[Pod], None],
        on_event: Callable[[str, str, str], None] = lambda *_: None,
    ) -> None:
        self.pod = pod
        self.config = config
        self.address = address
        self.node_ip = node_ip
        self.volumes = volumes
        self.dir = config.pod_dir(pod["metadata"]["uid"])
        self.root = self.dir / "root"
        self.terminating = False
        self._on_change = on_change
        self._on_event = on_event
        self._conditions: list[Pod] = []
        status = pod.get("status") or {}
        self.started_at = status.get("startTime") or now()
        before = {s["name"]: s for s in status.get("containerStatuses") or []}
        self.containers = [
            Container(self, spec, before.get(spec["name"], {}))
            for spec in pod["spec"]["containers"]
        ]

    def phase(self) -> str:
        if any("waiting" in c.state and not c.last_state for c in self.containers):
            return "Pending"
        if all(c.done for c in self.containers):
            failed = any(c.state["terminated"]["exitCode"] != 0 for c in self.containers)
            return "Failed" if failed else "Succeeded"
        return "Running"

    def status(self) -> Pod:
        phase = self.phase()
        ready = phase == "Running" and all(c.ready for c in self.containers)
        reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        self._conditions = conditions(ready, reason, self._conditions)
        return {
            "phase": phase,
            "hostIP": self.node_ip,
            "podIP": self.address.ip,
            "podIPs": [{"ip": self.address.ip}],
            "startTime": self.started_at,
            "conditions": self._conditions,
            "containerStatuses": [c.status() for c in self.containers],
        }

    def changed(self) -> None:
        self._on_change(self.status())

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self._on_event(reason, message, kind)

    async def run(self) -> None:
        """Run every container until all are done for good; a cancel kills them at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "node").write_text(str(self.pod["spec"].get("nodeName", "")))
        tasks = [asyncio.create_task(c.run(), name=f"container-{c.name}") for c in self.containers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for container in self.containers:
                container.kill()
            for task in tasks:
                task.cancel()
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))

    async def terminate(self, grace: float) -> None:
        """Graceful stop: SIGTERM every container, SIGKILL whatever is left after ``grace``."""
        self.terminating = True
        self.event("Killing", f"Stopping containers (grace period {grace:g}s)")
        await asyncio.gather(*(c.stop(grace) for c in self.containers))
