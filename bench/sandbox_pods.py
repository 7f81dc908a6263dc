"""Process-pod benchmark: what a QNM node costs in the sandbox, from Deployment to answering node.

What it does
    Starts its own sandbox (in a temporary folder, tied to this process) whose pods of the QNM
    image run as processes (the stand-in, `app.sandbox.images.STANDIN`), each in its own network
    namespace. It then makes QNM nodes the way ``tests/sandbox/test_qnm_pods.py`` does, from
    plain Services and Deployments (``IP`` = the node's Service ClusterIP, ``COORDINATING_IP`` =
    the coordinator's), and times them from outside, by polling the apiserver and JSON-RPC at
    the pod IP (port 20010) every 50 ms:

    coordinator  ``--runs`` times: make its Service, then (clock starts) its Deployment; until the
                 pod is Running and Ready, and until ``eth_blockNumber`` first answers. Then the
                 Deployment and Service are deleted, until the pod is gone and no process of it
                 is left (timed too).
    peer         ``--peer-runs`` times, with one coordinator running: the peer's Service, then
                 (clock starts) its Deployment; until ``net_peerCount`` is 1 on both, and until
                 the peer's height reaches the coordinator's (read just before). Each peer but
                 the last is deleted again, until the coordinator counts 0 peers.
    footprint    the last peer and the coordinator, once the peer is 30 s old: resident memory
                 (VmRSS) summed over each pod's processes (found by ``QAAS_SANDBOX_ROOT``, which
                 names the pod's folder), then CPU time (utime + stime) over a 20 s window, as a
                 percentage of one core.
    simulated    for reference, ``--runs`` times the same coordinator Deployment with the pod
                 annotation ``sandbox.qaas.dev/runtime: simulated``: until Running and Ready.
    clean-up     everything is deleted, the sandbox stopped, and what is left of the sandbox's
                 slot is counted: network namespaces ``qsbx<k>-*``, links ``qv<k>-*`` and the
                 bridge ``qsbx<k>``, the nftables table ``qaas_sbx<k>``, processes whose
                 ``QAAS_SANDBOX_ROOT`` lies in the temporary folder. All should be 0. (Other
                 sandboxes may run on the same host in other slots: they are not counted.)

How to read the figures
    Times are seconds, median and max over the runs. They include the 50 ms polling and this
    process's own share of the machine (every pod is a Node.js process on the same cores).

Usage::

    python bench/sandbox_pods.py [--runs 5] [--peer-runs 3] [--timeout 300]

Needs root (network namespaces, nftables) and Node.js; exits 2 without them or when the run
does not finish within ``--timeout``, 1 if anything was left after the clean-up. Only the pod
IPs of the sandbox's own bridge (checked against its pod range) and 127.0.0.1 (its apiserver)
are contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from kubernetes_asyncio import client, config

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/ and bench/, as in chaos.py

from app.sandbox.handle import Sandbox, SandboxState
from app.sandbox.images import RUNTIME_ANNOTATION, SIMULATED, STANDIN
from app.sandbox.podenv import marked
from app.sandbox.slots import Slot
from bench.chaos import namespace_for
from bench.fanout import cpu_seconds, log, rss_kib
from tests.helpers import eventually, sandbox_processes
from tests.sandbox.test_qnm_pods import Node, _deployment

POLL = 0.05  # seconds between two looks
WITHIN = 90.0  # the bound of every single wait
FOOTPRINT_AGE = 30.0  # the peer's age when its memory is read
CPU_WINDOW = 20.0
# httpx would send pod-IP requests to a proxy named in the environment: never leave the host.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")  # fmt: skip


class PodNode(Node):
    """A QNM node of the test module whose pod is only dialled inside the sandbox's pod range."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, pod_range: ipaddress.IPv4Network
    ) -> None:
        super().__init__(api, namespace, name)
        self.pod_range = pod_range

    async def pod(self) -> client.V1Pod | None:
        pod = await super().pod()
        if pod is not None and ipaddress.ip_address(pod.status.pod_ip) not in self.pod_range:
            raise RuntimeError(f"pod IP {pod.status.pod_ip} is outside {self.pod_range}")
        return pod

    async def ready(self) -> bool:
        return any(
            p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in await self._pods()
        )

    async def answering(self) -> bool:
        return await self.height() is not None

    @property
    def selector(self) -> str:
        return f"app={self.name}"

    async def remove(self) -> float:
        """Delete the Deployment and Service; seconds until no pod and no process of it is left."""
        uids = [p.metadata.uid for p in (await self._pods())]
        started = time.monotonic()
        await self.apps.delete_namespaced_deployment(self.name, self.namespace)
        await self.core.delete_namespaced_service(self.name, self.namespace)

        async def gone() -> bool:
            return not await self._pods() and not any(
                sandbox_processes(f"/pods/{uid}/") for uid in uids
            )

        return await since(started, gone)

    async def _pods(self) -> list[client.V1Pod]:
        listing = await self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        return list(listing.items)


async def since(started: float, condition: Callable[[], Awaitable[bool]]) -> float:
    """Seconds from ``started`` until ``condition`` holds (bounded by ``WITHIN``)."""
    await eventually(condition, within=WITHIN, every=POLL)
    return time.monotonic() - started


@dataclass
class Report:
    times: dict[str, list[float]] = field(default_factory=dict)
    footprint: list[tuple[str, float, float]] = field(default_factory=list)  # name, MiB, CPU %
    leftovers: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.times.setdefault(label, []).append(seconds)

    def table(self) -> str:
        lines = [f"{'measure':<58}{'runs':>5}{'median':>9}{'max':>9}"]
        for label, values in self.times.items():
            lines.append(
                f"{label:<58}{len(values):>5}{statistics.median(values):>8.2f}s{max(values):>8.2f}s"
            )
        for name, mib, cpu in self.footprint:
            lines.append(f"{name + ': RSS of its processes':<58}{1:>5}{mib:>6.0f} MiB")
            lines.append(f"{name + f': CPU over {CPU_WINDOW:.0f} s':<58}{1:>5}{cpu:>7.1f} %")
        for what, count in self.leftovers.items():
            lines.append(f"{'left after down: ' + what:<58}{count:>5}")
        return "\n".join(lines)


def coordinator_env(name: str, cluster_ip: str) -> dict[str, str]:
    """What `Node.create_deployment` gives a coordinator (for a Deployment made by hand)."""
    return {"NODE_NAME": name, "ROLE": "coordinator", "CONSENSUS": "raft", "IP": cluster_ip}


async def coordinators(api: client.ApiClient, ns: str, net: ipaddress.IPv4Network,
                       runs: int, report: Report) -> None:  # fmt: skip
    for run in range(runs):
        node = PodNode(api, ns, f"coordinator-{run}", net)
        await node.create_service()
        started = time.monotonic()
        await node.create_deployment("coordinator")
        ready, answered = await asyncio.gather(
            since(started, node.ready), since(started, node.answering)
        )
        report.add("coordinator: Deployment -> Running+Ready", ready)
        report.add("coordinator: Deployment -> eth_blockNumber answers", answered)
        report.add("coordinator: delete -> pod and processes gone", await node.remove())
        log(f"coordinator run {run + 1}: ready {ready:.2f}s, answering {answered:.2f}s")


async def simulated(api: client.ApiClient, ns: str, net: ipaddress.IPv4Network,
                    runs: int, report: Report) -> None:  # fmt: skip
    for run in range(runs):
        node = PodNode(api, ns, f"simulated-{run}", net)
        cluster_ip = await node.create_service()
        manifest = _deployment(node.name, coordinator_env(node.name, cluster_ip))
        manifest["spec"]["template"]["metadata"]["annotations"] = {RUNTIME_ANNOTATION: SIMULATED}
        started = time.monotonic()
        await node.apps.create_namespaced_deployment(ns, manifest)
        report.add("simulated coordinator: Deployment -> Running+Ready",
                   await since(started, node.ready))  # fmt: skip
        await node.remove()


async def peers(api: client.ApiClient, ns: str, net: ipaddress.IPv4Network,
                runs: int, report: Report) -> None:  # fmt: skip
    coordinator = PodNode(api, ns, "coordinator", net)
    await coordinator.create_service()
    await coordinator.create_deployment("coordinator")
    await since(time.monotonic(), coordinator.answering)

    async def alone() -> bool:
        return await coordinator.peers() == 0

    for run in range(runs):
        peer = PodNode(api, ns, f"peer-{run}", net)
        started = await peer_run(coordinator, peer, report)
        if run < runs - 1:
            await peer.remove()
            await since(time.monotonic(), alone)
    await asyncio.sleep(max(0.0, started + FOOTPRINT_AGE - time.monotonic()))
    await footprint({"coordinator": coordinator, "peer": peer}, report)
    await peer.remove()
    await coordinator.remove()


async def peer_run(coordinator: PodNode, peer: PodNode, report: Report) -> float:
    """One peer joins ``coordinator``: timed to both peered and to caught up; returns its start."""
    await peer.create_service()
    started = time.monotonic()
    await peer.create_deployment("dynamicPeer", coordinator.cluster_ip)

    async def peered() -> bool:
        return await coordinator.peers() == 1 and await peer.peers() == 1

    async def caught_up() -> bool:
        theirs = await coordinator.height()
        mine = await peer.height()
        return theirs is not None and mine is not None and mine >= theirs

    paired = await since(started, peered)
    synced = await since(started, caught_up)
    report.add("peer: Deployment -> net_peerCount 1 on both", paired)
    report.add("peer: Deployment -> height reaches coordinator's", synced)
    log(f"peer {peer.name}: peered {paired:.2f}s, caught up {synced:.2f}s")
    return started


async def footprint(nodes: dict[str, PodNode], report: Report) -> None:
    """RSS now and CPU over the next ``CPU_WINDOW`` seconds of each pod's processes."""
    pids: dict[str, list[int]] = {}
    for role, node in nodes.items():
        pod = await node.pod()
        pids[role] = sandbox_processes(f"/pods/{pod.metadata.uid}/") if pod is not None else []
        if not pids[role]:
            raise RuntimeError(f"{node.name} has no running process to measure")
    rss = {role: sum(rss_kib(pid) for pid in group) / 1024 for role, group in pids.items()}
    before = {role: sum(cpu_seconds(pid) for pid in group) for role, group in pids.items()}
    started = time.monotonic()
    await asyncio.sleep(CPU_WINDOW)  # the measurement window itself
    window = time.monotonic() - started
    for role, group in pids.items():
        used = sum(cpu_seconds(pid) for pid in group) - before[role]
        report.footprint.append((f"{role} ({len(group)} proc)", rss[role], 100 * used / window))


async def bench(args: argparse.Namespace, state: SandboxState, report: Report) -> None:
    net = ipaddress.IPv4Network(state.raw["pod_cidr"])
    configuration = client.Configuration()
    await config.load_kube_config(str(state.kubeconfig), client_configuration=configuration)
    ns = await namespace_for(state.kubeconfig)
    async with client.ApiClient(configuration) as api:
        await coordinators(api, ns, net, args.runs, report)
        await peers(api, ns, net, args.peer_runs, report)
        await simulated(api, ns, net, args.runs, report)


def leftovers(slot: Slot, folder: Path) -> dict[str, int]:
    """What is left on the host of ``slot`` and of processes rooted in ``folder``."""

    def lines(*command: str) -> list[str]:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        return done.stdout.splitlines()

    links = [line.split(":")[1].strip().split("@")[0] for line in lines("ip", "-o", "link")]
    return {
        f"netns {slot.netns_prefix}*": sum(
            line.startswith(slot.netns_prefix) for line in lines("ip", "netns", "list")
        ),
        f"links {slot.veth_prefix}* and {slot.bridge}": sum(
            name.startswith(slot.veth_prefix) or name == slot.bridge for name in links
        ),
        f"nft table {slot.table}": sum(
            line.split()[-1] == slot.table for line in lines("nft", "list", "tables")
        ),
        "processes rooted in the temporary folder": len(marked(str(folder))),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="coordinator and simulated runs")
    parser.add_argument("--peer-runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="overall bound, seconds")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.peer_runs < 1 or args.timeout < 120:
        parser.error("--runs and --peer-runs must be positive, --timeout at least 120")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 or shutil.which("node") is None or shutil.which("nft") is None:
        print("needs root (network namespaces, nftables: nft) and Node.js (node)", file=sys.stderr)
        return 2
    if not (Path(STANDIN[-1]).parent / "node_modules").is_dir():
        print("the QNM stand-in's npm packages are missing: run ./dev setup", file=sys.stderr)
        return 2
    for variable in PROXY_VARIABLES:
        os.environ.pop(variable, None)

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark did not finish within {args.timeout:.0f}s")

    signal.signal(signal.SIGALRM, out_of_time)  # a backstop for the blocking parts
    signal.alarm(int(args.timeout) + 60)
    started = time.monotonic()
    report = Report()
    try:
        with tempfile.TemporaryDirectory(prefix="qaas-pods-") as tmp:
            sandbox = Sandbox(Path(tmp) / "sandbox")
            slot: Slot | None = None
            try:
                state = sandbox.up(progress=log, detach=False, runtime="process", timeout=180)
                if not state.raw.get("bridge"):
                    raise RuntimeError(f"the sandbox has no pod network: {state.raw}")
                slot = Slot(int(state.raw["slot"]))
                left = args.timeout - (time.monotonic() - started)

                async def bounded() -> None:
                    async with asyncio.timeout(left):
                        await bench(args, state, report)

                asyncio.run(bounded())
            finally:
                log("stopping the sandbox")
                sandbox.down()
                if slot is not None:
                    report.leftovers = leftovers(slot, Path(tmp))
    except TimeoutError:
        print(f"the benchmark did not finish within {args.timeout:.0f}s", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    print(
        f"\nQNM process pods in the sandbox: {os.cpu_count()} cores, "
        f"{time.monotonic() - started:.0f}s in all"
    )
    print(report.table())
    return 1 if any(report.leftovers.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
