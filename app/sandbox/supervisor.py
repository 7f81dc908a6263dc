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
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.build import ensure_binaries
from app.sandbox.control_plane import ControlPlane
from app.sandbox.kubelet import SimulatedKubelet
from app.sandbox.podnet import PodNetwork, PodNetworkError, unavailable
from app.sandbox.provisioner import LocalPathProvisioner, ensure_default_storage_class
from app.sandbox.proxy import ServiceProxy
from app.sandbox.routes import RouteGuard
from app.sandbox.slots import Slot, claim, clean, release

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
    plane: ControlPlane, state_dir: Path, nodes: int, started: float, slot: Slot
) -> None:
    """Run the kubelets until SIGTERM/SIGINT; record "ready" once every node is registered."""
    problem = unavailable()
    network = PodNetwork(slot, nodes)
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
        await _serve(plane, state_dir, nodes, started, network, problem)
    finally:
        await network.teardown()  # a no-op without root


async def _serve(
    plane: ControlPlane,
    state_dir: Path,
    nodes: int,
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
            SimulatedKubelet(
                api,
                f"sandbox-node-{i + 1}",
                node_ip=slot.node_ip(i),
                pod_cidr=slot.node_cidr(i),
                addresses=network.ipam,
            )
            for i in range(nodes)
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
        asyncio.run(serve(plane, state_dir, args.nodes, started, slot))
    except KeyboardInterrupt:
        pass
    except Exception as error:
        log.error("sandbox failed: %s", error)
        outcome = {"status": "failed", "error": str(error)}
    finally:
        if plane is not None:
            plane.stop()
        if slot is not None:
            clean(slot)  # serve() tore the network down; this covers an interrupted start-up
            release(slot)
        guard.release()
        write_state(state_dir, supervisor_pid=os.getpid(), **outcome)
    return 0 if outcome["status"] == "stopped" else 1


if __name__ == "__main__":
    sys.exit(main())
