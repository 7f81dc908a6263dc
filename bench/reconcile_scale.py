"""A reconcile pass at scale: what a pass over settled nodes costs, and how long start-up takes.

What it does (issue 14)
    Starts a sandbox of its own (simulated pods, a temporary folder, tied to this process) and:

    1. real: seeds ``--real`` settled nodes (default 2,000, in networks of 4) as the reconciler
       and the pod watch would have left them: rows in a SQLite database (RUNNING, objects made,
       pod observed) and, in the sandbox's apiserver, each node's Service (with its ClusterIP)
       and StatefulSet, made by the project's own builders, created with bounded concurrency
       (the time it took is printed). The sandbox's controller manager (a process this run
       started) is stopped first, so the StatefulSets make no pods: 10,000 pods would not fit.
       The sandbox's Service range (/20) holds about 4,000 ClusterIPs, so 10,000 real Services
       cannot exist here. Then: full passes of the real reconciler (it lists the four kinds
       from the apiserver and finds nothing to change), timed, with their SQL statements,
       writes and API calls counted; and start-up of the whole service (``create_app`` and its
       lifespan, in this process) on that database and sandbox until /readyz answers 200 and
       the first pass is done, plus the import time of ``app.server`` in a fresh interpreter;
       and, end to end, ``--startups`` times: `qaas serve` started as a fresh process until
       /readyz answers 200 and /metrics counts a finished pass (what it imports late counts).
    2. memory: ``--nodes`` settled nodes (default 10,000) in a fresh database, the real
       reconciler, but the four lists served from memory (the builders' objects, decoded from
       JSON on every list as the client does): the pass's own cost at 10,000. And a relist of
       10,000 running pods (from memory) by the real pod informer and observer.

Figures: seconds per pass (median of ``--passes``, after a first pass: a settled node is then
skipped while unchanged, app/control/settled.py), statements and writes per pass, API calls by
verb, each next to its goal; and the first pass's seconds (every node compared). Usage::

    flock /tmp/qaas-bench.lock .venv/bin/python bench/reconcile_scale.py [--real 2000]
        [--nodes 10000] [--passes 3] [--startups 3]

The run stops by itself within ``--timeout`` seconds (600). Only the sandbox is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.parser import tune_gc
from app.cluster.client import (
    CLAIMS,
    DEPLOYMENTS,
    LIST_PAGE,
    PODS,
    RESOURCE_QUOTAS,
    SERVICES,
    STATEFULSETS,
    Cluster,
)
from app.cluster.client import Resource as KubeResource
from app.cluster.connect import ClusterTarget, connect
from app.cluster.errors import NotFound
from app.cluster.informer import Informer
from app.cluster.objects import CONTAINER, NODE_ID, NodeObjects, selector_for
from app.cluster.retry import decode
from app.config import Settings, load_settings
from app.control.observer import PodObserver
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, NodeRole, NodeStatus, Role
from app.events.bus import InProcessBus
from app.sandbox.handle import Sandbox
from app.server import create_app
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from app.store.models import Network, Node, Tenant, utcnow

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in chaos.py

from bench.harness import bounded_with_sandbox, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
GOAL_PASS, GOAL_STARTUP = 5.0, 3.0
GOAL_HOLD = 0.03  # a request waiting longer for its turn misses the mutations' p99 goal
WRITES = ("INSERT", "UPDATE", "DELETE")
# When the seeded pods started (whole seconds, as a pod's startTime): rows and pods agree.
STARTED = utcnow().replace(microsecond=0) - datetime.timedelta(hours=1)


def log(line: str) -> None:
    print(f"# {line}", file=sys.stderr, flush=True)


class Counter:
    """SQL statements on one engine and API calls by verb on one cluster, while counting."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.statements: list[str] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.on = False
        event.listen(sessions.kw["bind"].sync_engine, "before_cursor_execute", self._statement)

    def _statement(self, *args: Any) -> None:
        if self.on:
            self.statements.append(args[2])

    def watch_calls(self, cluster: Cluster) -> None:
        real = cluster.caller.call

        async def call(verb: str, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.calls[verb] += 1
            return await real(verb, *args, **kwargs)

        cluster.caller.call = call  # type: ignore[method-assign]

    def reset(self) -> None:
        self.statements.clear()
        self.calls.clear()

    @property
    def writes(self) -> int:
        return sum(s.lstrip().upper().startswith(WRITES) for s in self.statements)


def plan(count: int, per_network: int) -> list[tuple[int, int, str]]:
    """(network number, node number, node id) for ``count`` nodes; node 0 is the coordinator."""
    return [(i // per_network, i % per_network, str(uuid.uuid4())) for i in range(count)]


def node_name(i: int) -> str:
    return "coordinator" if i == 0 else f"peer-{i}"


def spec_of(settings: Settings, ids: dict[int, str], n: int, i: int, node_id: str) -> NodeObjects:
    return NodeObjects.for_node(
        settings, network_id=ids[n], node_id=node_id, network=f"net-{n:05}", node=node_name(i),
        role=NodeRole.COORDINATOR if i == 0 else NodeRole.PEER, consensus=Consensus.RAFT,
    )  # fmt: skip


async def database(url: str, settings: Settings, max_nodes: int) -> tuple[Any, str, str]:
    """A migrated database with one tenant whose quota fits ``max_nodes``."""
    await upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    tenant, _, _ = await create_token(sessions, "bench", Role.ADMIN, settings, "bench")
    async with sessions.begin() as session:
        await session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id)
            .values(max_nodes=max_nodes, max_networks=max_nodes)
        )
    return sessions, tenant.id, tenant.namespace


async def seed_rows(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, nodes: list[tuple[int, int, str]],
    network_ids: dict[int, str], ips: dict[str, str], pods: bool,
) -> None:  # fmt: skip
    """Rows of settled nodes: RUNNING, objects made, pod observed (as the observer records)."""
    at = STARTED
    rows: list[Network | Node] = [
        Network(id=network_id, tenant_id=tenant_id, name=f"net-{n:05}", consensus=Consensus.RAFT)
        for n, network_id in network_ids.items()
    ]
    for n, i, node_id in nodes:
        rows.append(Node(
            id=node_id, network_id=network_ids[n], name=node_name(i),
            role=NodeRole.COORDINATOR if i == 0 else NodeRole.PEER, status=NodeStatus.RUNNING,
            status_changed_at=at, start_deadline=None, has_service=True, has_deployment=True,
            service_ip=ips[node_id], pod_name=f"pod-{node_id}" if pods else None,
            pod_phase="Running" if pods else None, pod_ready=pods,
            pod_ip=f"10.244.{hash(node_id) % 250}.{i + 2}" if pods else None,
            pod_started_at=at if pods else None,
        ))  # fmt: skip
    async with sessions.begin() as session:
        session.add_all(rows)


class LoopHold:
    """The longest stretch the event loop was held by others (here: the pass) between two
    turns of a task that only yields: how long an API request arriving during the pass could
    wait for its first turn. Counted in the CPU time of the loop's thread, not on the wall
    clock: the sandbox's apiserver and etcd share this machine's two cores, and while they
    answer a list they take the core from this process in the middle of any stretch."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = time.thread_time()
        self._task: asyncio.Task[None] | None = None

    def _turn(self) -> None:
        now = time.thread_time()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    async def _turns(self) -> None:
        while True:
            self._turn()
            await asyncio.sleep(0)

    def __enter__(self) -> LoopHold:
        self._last = time.thread_time()
        self._task = asyncio.get_running_loop().create_task(self._turns())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._turn()  # the stretch up to the pass's end counts too
        self._task.cancel()


async def passes(reconciler: Reconciler, counter: Counter, count: int) -> dict[str, Any]:
    # Warm-up: the namespace is prepared once per process, and no node is remembered as settled
    # yet (app/control/settled.py): every node's objects are compared. Timed, not counted.
    started = time.perf_counter()
    await reconciler.reconcile_once()
    first = time.perf_counter() - started
    seconds, statements, writes, calls = [], [], [], collections.Counter[str]()
    held = []
    for _ in range(count):
        counter.reset()
        counter.on = True
        started = time.perf_counter()
        with LoopHold() as hold:
            await reconciler.reconcile_once()
        seconds.append(time.perf_counter() - started)
        held.append(hold.longest)
        counter.on = False
        statements.append(len(counter.statements))
        writes.append(counter.writes)
        calls += counter.calls
    return {"seconds": statistics.median(seconds), "first": first,
            "skipped": reconciler.settled.skipped, "held": max(held), "statements": max(statements),
            "writes": max(writes), "calls": {k: v // count for k, v in calls.items()}}  # fmt: skip


def report(label: str, figures: dict[str, Any], nodes: int) -> None:
    print(f"{label}: a settled pass over {nodes:,} nodes: {figures['seconds']:.2f} s "
          f"(goal <= {GOAL_PASS:g} s at 10,000); {figures['statements']} SQL statements, "
          f"{figures['writes']} writes (goal 0); API calls {dict(figures['calls'])} "
          "(goal: lists only, of 4 kinds per namespace, 1 request per page)")  # fmt: skip
    print(
        f"  the event loop held by the pass for at most {figures['held'] * 1000:.0f} ms at a "
        f"time (goal <= {GOAL_HOLD * 1000:g} ms: how long a request may wait for its turn)"
    )
    print(f"  {figures['skipped']:,} nodes skipped as unchanged since settled; the first pass "
          f"(nothing remembered, every node compared; namespace prepared): "
          f"{figures['first']:.2f} s")  # fmt: skip


async def real_phase(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'real.db'}"
    settings = load_settings(database_url=url, kubeconfig=str(kubeconfig), cluster="kubeconfig",
                             resync_seconds=3600, chain_probe="off")  # fmt: skip
    sessions, tenant_id, namespace = await database(url, settings, args.real)
    cluster = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    try:
        reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
        await reconciler.reconcile_once()  # provisions the tenant's namespace (and its quota)
        quota = cluster.resource(RESOURCE_QUOTAS, namespace)
        for _ in range(300):  # quota admission needs the controller's first status
            try:
                if (await quota.get("qaas-tenant")).get("status", {}).get("hard"):
                    break
            except NotFound:
                break  # no quota in this namespace (e.g. the installation's own)
            await asyncio.sleep(0.2)
        pid = Sandbox(workdir / "sandbox").state().pids["kube-controller-manager"]  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)  # ours: no pods for 2 x N objects (see the module)
        nodes = plan(args.real, args.per_network)
        network_ids = {n: str(uuid.uuid4()) for n, _, _ in nodes}
        ips: dict[str, str] = {}
        gate = asyncio.Semaphore(args.concurrency)
        services = cluster.resource(SERVICES, namespace)
        workloads = cluster.resource(STATEFULSETS, namespace)
        started = time.perf_counter()

        async def service(n: int, i: int, node_id: str) -> None:
            async with gate:
                made = await services.create(
                    spec_of(settings, network_ids, n, i, node_id).service()
                )
            ips[node_id] = made["spec"]["clusterIP"]

        async def workload(n: int, i: int, node_id: str) -> None:
            coordinator = ips[next(x for m, j, x in nodes if m == n and j == 0)]
            body = spec_of(settings, network_ids, n, i, node_id).statefulset(
                own_ip=ips[node_id], coordinator_ip=coordinator)  # fmt: skip
            async with gate:
                await workloads.create(body)

        await asyncio.gather(*(service(*node) for node in nodes))
        await asyncio.gather(*(workload(*node) for node in nodes))
        made = time.perf_counter() - started
        print(f"seeding: {2 * args.real:,} objects ({args.real:,} Services, {args.real:,} "
              f"StatefulSets) created in {made:.1f} s ({2 * args.real / made:.0f}/s, "
              f"{args.concurrency} at a time)")  # fmt: skip
        await seed_rows(sessions, tenant_id, nodes, network_ids, ips, pods=False)
        counter = Counter(sessions)
        counter.watch_calls(cluster)
        figures = await passes(reconciler, counter, args.passes)
        report("real apiserver", figures, args.real)
        print(
            f"  per 1,000 nodes: {figures['seconds'] / args.real * 1000:.2f} s; "
            f"at 10,000 by linear extrapolation: {figures['seconds'] / args.real * 1e4:.1f} s"
        )
    finally:
        await cluster.close()
        await sessions.kw["bind"].dispose()
    await startup(settings, args.real)
    if args.startups:
        await serve_process(settings, args.real, workdir, args.startups)


async def startup(settings: Settings, nodes: int) -> None:
    """The service's start-up on a warm sandbox and a database of ``nodes`` settled nodes.

    The project's bytecode is compiled first, in place, as the image does (this machine sets
    PYTHONDONTWRITEBYTECODE: a fresh interpreter would compile ``app`` and ``schema`` again)."""
    compiled = [sys.executable, "-m", "compileall", "-q", "app", "schema", "migrations"]
    await asyncio.to_thread(subprocess.run, compiled, cwd=ROOT, check=True)
    started = time.perf_counter()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qaas.bench") as http:
            while True:
                ready = (await http.get("/readyz")).status_code == 200
                control = getattr(app.state, "control", None)
                if ready and control is not None and control.reconciler.passes >= 1:
                    break
                await asyncio.sleep(0.01)
        took = time.perf_counter() - started
    importing = min([await import_seconds() for _ in range(3)])
    print(f"start-up with {nodes:,} nodes (warm sandbox): ready and first pass done "
          f"{took:.2f} s after create_app, + {importing:.2f} s importing app.server (min of 3, "
          f"bytecode compiled) = {took + importing:.2f} s "
          f"(goal <= {GOAL_STARTUP:g} s)")  # fmt: skip


async def import_seconds() -> float:
    """How long a fresh interpreter takes to import app.server."""
    imported = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import time; t = time.perf_counter(); import app.server; "
         "print(time.perf_counter() - t)"], cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(imported.stdout.strip())


async def serve_process(settings: Settings, nodes: int, workdir: Path, runs: int) -> None:
    """`qaas serve` end to end, ``runs`` times: a fresh process started until /readyz answers
    200 and /metrics counts a finished pass. What it imports late is counted too (unlike the
    in-process figure, whose process imported everything before). Bytecode as ``startup``
    left it: compiled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QAAS_")}
    env.pop("KUBECONFIG", None)
    env.update(PYTHONPATH=str(ROOT), QAAS_DATABASE_URL=settings.database_url,
               QAAS_CLUSTER="kubeconfig", QAAS_KUBECONFIG=str(settings.kubeconfig),
               QAAS_RESYNC_SECONDS="3600", QAAS_CHAIN_PROBE="off")  # fmt: skip
    serve = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"
    took: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        port = free_port()
        with log_file(workdir / "serve.log") as out:
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", serve, "serve", "--port", str(port), cwd=workdir,
                env=env, stdout=out, stderr=out,
            )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                while not await served(http):
                    assert process.returncode is None, f"qaas serve exited (see {out.name})"
                    await asyncio.sleep(0.01)
            took.append(time.perf_counter() - started)
            cpu.append(cpu_seconds(process.pid))
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()
    print(f"start-up of `qaas serve` in a fresh process with {nodes:,} nodes (warm sandbox): "
          f"ready and first pass done {min(took):.2f} s (min of {runs}; "
          f"median {statistics.median(took):.2f} s; goal <= {GOAL_STARTUP:g} s); the process's "
          f"CPU time until then {min(cpu):.2f} s (min; less sensitive to the machine's "
          "load)")  # fmt: skip


def log_file(path: Path) -> BinaryIO:
    return path.open("ab")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def served(http: httpx.AsyncClient) -> bool:
    """/readyz answers 200 and /metrics counts at least one finished reconcile pass."""
    try:
        if (await http.get("/readyz")).status_code != 200:
            return False
        metrics = (await http.get("/metrics")).text
    except httpx.TransportError:  # not listening yet
        return False
    passes = [line.split()[-1] for line in metrics.splitlines()
              if line.startswith('qaas_reconcile_passes_total{scope="all"} ')]  # fmt: skip
    return bool(passes) and float(passes[0]) >= 1


class Listed:
    """One kind's objects served from memory, as JSON decoded on every list (the client does
    the same with the apiserver's answer); anything but a list is counted as a mutation."""

    def __init__(self, kind: Any, namespace: str, objects: list[dict[str, Any]]) -> None:
        self.kind, self.namespace = kind, namespace
        self.pages = [  # as the apiserver answers the client's pages (app/cluster/client.py)
            json.dumps({"items": objects[i : i + LIST_PAGE], "metadata": {}}).encode()
            for i in range(0, max(len(objects), 1), LIST_PAGE)
        ]
        self.mutations = 0

    async def list(self, _selector: str = "") -> tuple[list[dict[str, Any]], str]:
        items = []
        for page in self.pages:
            await asyncio.sleep(0)  # each page is a request of its own
            items.extend(decode(page)["items"])  # as the client decodes the apiserver's answer
        return items, "1"

    def __getattr__(self, verb: str) -> Any:
        async def mutate(*_: Any, **__: Any) -> Any:
            self.mutations += 1
            raise AssertionError(f"a settled pass called {verb}")

        return mutate


async def memory_phase(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'memory.db'}"
    settings = load_settings(database_url=url, kubeconfig=str(kubeconfig), cluster="kubeconfig",
                             resync_seconds=3600, chain_probe="off")  # fmt: skip
    sessions, tenant_id, namespace = await database(url, settings, args.nodes)
    nodes = plan(args.nodes, args.per_network)
    network_ids = {n: str(uuid.uuid4()) for n, _, _ in nodes}
    ips = {node_id: f"10.{96 + k // 65536}.{k // 256 % 256}.{k % 256}"
           for k, (_, _, node_id) in enumerate(nodes)}  # fmt: skip
    coordinators = {n: ips[x] for n, i, x in nodes if i == 0}
    service_objects, workload_objects, pod_objects = [], [], []
    for n, i, node_id in nodes:
        spec = spec_of(settings, network_ids, n, i, node_id)
        meta = {"uid": str(uuid.uuid4()), "resourceVersion": "1", "namespace": namespace}
        svc = spec.service()
        svc["metadata"].update(meta)
        svc["spec"]["clusterIP"] = ips[node_id]
        sts = spec.statefulset(own_ip=ips[node_id], coordinator_ip=coordinators[n])
        sts["metadata"].update(meta)
        service_objects.append(svc)
        workload_objects.append(sts)
        pod_objects.append(running_pod(spec, node_id, namespace, i))
    await seed_rows(sessions, tenant_id, nodes, network_ids, ips, pods=True)
    listed = {SERVICES: Listed(SERVICES, namespace, service_objects),
              STATEFULSETS: Listed(STATEFULSETS, namespace, workload_objects),
              CLAIMS: Listed(CLAIMS, namespace, []),
              DEPLOYMENTS: Listed(DEPLOYMENTS, namespace, [])}  # fmt: skip
    cluster = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    real_resource = cluster.resource

    def resource(kind: Any, ns: str | None = None) -> KubeResource:
        return listed[kind] if kind in listed else real_resource(kind, ns)  # type: ignore[return-value]

    cluster.resource = resource  # type: ignore[method-assign]
    try:
        counter = Counter(sessions)
        counter.watch_calls(cluster)
        reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
        figures = await passes(reconciler, counter, args.passes)
        figures["calls"]["list (from memory)"] = 4
        report("lists from memory", figures, args.nodes)
        assert not any(r.mutations for r in listed.values())

        # The pod informer's relist of N running pods as recorded (start-up, 410 Gone).
        observer = PodObserver(reconciler.writer)
        pods = Listed(PODS, namespace, pod_objects)
        informer = Informer(pods, selector_for(settings.instance), observer.handle,  # type: ignore[arg-type]
                            index_label=NODE_ID, on_relist=observer.prime)  # fmt: skip
        observer.follow(informer)
        counter.reset()
        counter.on = True
        started = time.perf_counter()
        await informer._relist()
        took = time.perf_counter() - started
        counter.on = False
        print(f"pod informer relist of {len(informer.cache):,} running pods as recorded: "
              f"{took:.2f} s, {len(counter.statements)} SQL statements, {counter.writes} writes "
              "(goal 0)")  # fmt: skip
    finally:
        await cluster.close()
        await sessions.kw["bind"].dispose()


def running_pod(spec: NodeObjects, node_id: str, namespace: str, i: int) -> dict[str, Any]:
    labels = spec.statefulset(own_ip="10.0.0.1", coordinator_ip="10.0.0.1")["spec"]["template"][
        "metadata"]["labels"]  # fmt: skip
    at = STARTED.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": f"pod-{node_id}", "uid": str(uuid.uuid4()), "namespace": namespace,
                     "resourceVersion": "1", "labels": {**labels, NODE_ID: node_id},
                     "creationTimestamp": at},
        "status": {"phase": "Running", "podIP": f"10.244.{hash(node_id) % 250}.{i + 2}",
                   "startTime": at, "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": CONTAINER, "restartCount": 0,
                                          "state": {"running": {"startedAt": at}}}]},
    }  # fmt: skip


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> bool:
    if args.nodes:
        await memory_phase(args, workdir, kubeconfig)
    if args.real:
        await real_phase(args, workdir, kubeconfig)
    return True


def main() -> int:
    tune_gc()  # the reconciler in this process collects garbage as in `qaas serve`
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes, lists from memory")
    parser.add_argument("--real", type=int, default=2_000, help="nodes with real objects (<= 4000)")
    parser.add_argument("--per-network", type=int, default=4)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--startups", type=int, default=3, help="`qaas serve` start-ups timed")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.real > 4000:
        parser.error("--real: the sandbox's Service range holds about 4,000 ClusterIPs")
    done = bounded_with_sandbox(
        "qaas-scale-",
        args.timeout,
        log,
        lambda workdir, kubeconfig: bench(args, workdir, kubeconfig),
    )
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
