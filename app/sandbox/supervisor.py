"""The sandbox's owner process: starts the control plane, runs the simulated kubelet, stops both.

One process owns everything a sandbox runs, so one pid stops it all: SIGTERM or SIGINT makes it
stop the kubelet and the control plane in order; if it is killed outright, its children get
SIGKILL from the kernel (see `processes.spawn`). It records its state in ``state.json`` in the
sandbox folder, which `Sandbox` (the handle the CLI and the tests use) reads.

At start it claims a slot (`app.sandbox.slots`: its address ranges and host names; claiming
removes what a killed sandbox left of that slot), sets up the slot's pod network
(`app.sandbox.podnet`) before the kubelets and runs the kube-proxy role (`app.sandbox.proxy`)
beside them; at stop it removes the network and gives the slot back. Without root or without
``nft`` there is no pod network: it says so in the log and in ``state.json`` (``pod_network``),
and pods are simulated with addresses that lead nowhere, as before.

Run as ``python -m app.sandbox.supervisor STATE_DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.build import ensure_binaries
from app.sandbox.control_plane import ControlPlane
from app.sandbox.images import DEFAULT_QNM_IMAGE, ImageTable
from app.sandbox.kubelet import Kubelet, Serving
from app.sandbox.podnet import NodePods, PodNetwork, PodNetworkError, unavailable
from app.sandbox.provisioner import LocalPathProvisioner, ensure_default_storage_class
from app.sandbox.proxy import ServiceProxy
from app.sandbox.routes import RouteGuard
from app.sandbox.runtime import RuntimeConfig
from app.sandbox.slots import Slot, claim, clean, release
from app.sandbox.volumes import VolumeResolver

log = logging.getLogger("qaas.sandbox")
STATE_FILE = "state.json"


def write_state(state_dir: Path, **fields: Any) -> None:
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields, indent=2))
    tmp.replace(path)  # readers never see half a file


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


async def _first(*tasks: asyncio.Future[Any]) -> None:
    """Wait until one task ends; re-raise its error if it failed."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _default_service_account(api: client.ApiClient) -> None:
    """Wait for default/default: until the controllers create it, pods there are refused."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 30
    while True:
        try:
            await core.read_namespaced_service_account("default", "default")
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def _network_fields(slot: Slot, problem: str | None) -> dict[str, Any]:
    return {
        "slot": slot.index,
        "pod_cidr": slot.pod_cidr,
        "service_cidr": slot.service_cidr,
        "bridge": None if problem else slot.bridge,
        "pod_network": f"simulated: {problem}" if problem else "bridge",
    }


async def serve(
    plane: ControlPlane, state_dir: Path, options: Options, started: float, slot: Slot
) -> None:
    """Run the kubelets until SIGTERM/SIGINT; record "ready" once every node is registered."""
    problem = unavailable()
    network = PodNetwork(slot, options.nodes)
    try:
        if not problem:
            try:
                await network.setup()
            except PodNetworkError as error:  # e.g. root without CAP_NET_ADMIN (a container)
                problem = f"setting it up failed: {error}"
                await network.teardown()
        if problem:
            log.warning("no pod network (%s): pods are simulated, their IPs lead nowhere and "
                        "ClusterIPs do not answer", problem)  # fmt: skip
        await _serve(plane, state_dir, options, started, network, problem)
    finally:
        await network.teardown()  # a no-op without root


@dataclass(frozen=True)
class Options:
    """The supervisor's command line: nodes, and how pods of the image table run."""

    nodes: int = 1
    runtime: str = "process"  # for pods and namespaces that do not say (app.sandbox.images)
    max_process_pods: int = 16  # per node


def _kubelet(
    api: client.ApiClient,
    plane: ControlPlane,
    state_dir: Path,
    network: PodNetwork,
    problem: str | None,
    options: Options,
    i: int,
) -> Kubelet:
    """Node ``i``'s kubelet. Without a pod network every pod is simulated and the kubelet's
    HTTPS endpoint listens on loopback (any free port) instead of the node's bridge address."""
    assert plane.creds is not None
    name, cidr = f"sandbox-node-{i + 1}", network.slot.node_cidr(i)
    serving = Serving(plane.creds.pki_dir, port=0 if problem else 10250)
    if problem:
        return Kubelet(api, name, node_ip="127.0.0.1", pod_cidr=cidr, serving=serving)
    # The QNM image is whatever the service is configured to run (QAAS_NODE_IMAGE), and the
    # published one; app.sandbox does not import app.config, so it reads the variable itself.
    images = ImageTable({DEFAULT_QNM_IMAGE, os.environ.get("QAAS_NODE_IMAGE") or DEFAULT_QNM_IMAGE})
    runtime = RuntimeConfig(
        images,
        state_dir,
        volumes=VolumeResolver(api),
        max_process_pods=options.max_process_pods,
        default=options.runtime,
    )
    return Kubelet(
        api,
        name,
        node_ip=network.slot.node_ip(i),
        pod_cidr=cidr,
        runtime=runtime,
        network=NodePods(network, cidr),
        serving=serving,
    )


async def _serve(
    plane: ControlPlane,
    state_dir: Path,
    options: Options,
    started: float,
    network: PodNetwork,
    problem: str | None,
) -> None:
    slot = network.slot
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(plane.kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        # Volumes: claims made once the sandbox is ready get the default class; its provisioner
        # runs beside the kubelets (app/sandbox/provisioner.py).
        await ensure_default_storage_class(api)
        provisioner = LocalPathProvisioner(api, state_dir / "volumes")
        kubelets = [
            _kubelet(api, plane, state_dir, network, problem, options, i)
            for i in range(options.nodes)
        ]
        running = [asyncio.create_task(k.run(), name=k.node_name) for k in kubelets]
        running.append(asyncio.create_task(provisioner.run(), name="provisioner"))
        if not problem:
            proxy = ServiceProxy(api, slot)
            running.append(asyncio.create_task(proxy.run(), name="proxy"))
        all_ready: asyncio.Future[Any] = asyncio.gather(*(k.ready.wait() for k in kubelets))
        stopping = asyncio.create_task(stop.wait())
        try:
            await _first(all_ready, stopping, *running)
            if all_ready.done():
                await _default_service_account(api)
                write_state(
                    state_dir,
                    status="ready",
                    supervisor_pid=os.getpid(),
                    server=plane.server,
                    etcd=plane.etcd_url,
                    kubeconfig=str(plane.kubeconfig),
                    pids=plane.pids(),
                    nodes=[k.node_name for k in kubelets],
                    started_at=started,
                    ready_after_seconds=round(time.time() - started, 2),
                    **_network_fields(slot, problem),
                )
                log.info("sandbox ready at %s (kubeconfig %s)", plane.server, plane.kubeconfig)
                await _first(stopping, *running)
        finally:
            for task in [*running, stopping, all_ready]:
                task.cancel()
            await asyncio.gather(*running, stopping, all_ready, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sandbox.supervisor")
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--runtime", choices=("process", "simulated"), default="process")
    parser.add_argument("--max-process-pods", type=int, default=16)
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Until the event loop takes over, a signal interrupts start-up; ControlPlane.start cleans up.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)

    started = time.time()
    write_state(state_dir, status="starting", supervisor_pid=os.getpid(), started_at=started)
    outcome: dict[str, Any] = {"status": "stopped"}
    guard = RouteGuard()  # first: no sandbox address may be routed off the machine
    slot: Slot | None = None
    plane: ControlPlane | None = None
    try:
        guard.hold()
        slot = claim()  # removes whatever a killed sandbox left of this slot
        log.info("sandbox slot %d: pods %s, Services %s", slot.index, slot.pod_cidr,
                 slot.service_cidr)  # fmt: skip
        write_state(state_dir, status="starting", supervisor_pid=os.getpid(),
                    started_at=started, slot=slot.index)  # fmt: skip
        plane = ControlPlane(ensure_binaries(progress=log.info), state_dir, slot)
        plane.start()
        options = Options(args.nodes, args.runtime, args.max_process_pods)
        asyncio.run(serve(plane, state_dir, options, started, slot))
    except KeyboardInterrupt:
        pass
    except Exception as error:
        log.error("sandbox failed: %s", error)
        outcome = {"status": "failed", "error": str(error)}
    finally:
        if plane is not None:
            plane.stop()
        # The cluster's etcd is gone with it: so are its volumes and process pods' folders.
        for folder in ("volumes", "pods"):
            shutil.rmtree(state_dir / folder, ignore_errors=True)
        if slot is not None:
            clean(slot)  # serve() tore the network down; this covers an interrupted start-up
            release(slot)
        guard.release()
        write_state(state_dir, supervisor_pid=os.getpid(), **outcome)
    return 0 if outcome["status"] == "stopped" else 1


if __name__ == "__main__":
    sys.exit(main())
