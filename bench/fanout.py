"""Subscription fan-out benchmark: N subscribers, one pod status change, how long until all have it.

What it does
    Starts a local Kubernetes sandbox (in a temporary folder, tied to this process) and, for each
    N, a fresh QaaS server as a separate process (``qaas serve`` on 127.0.0.1, SQLite in the
    temporary folder). The first server creates one network; every server waits until its
    coordinator node is RUNNING. The benchmark then opens N WebSocket connections
    (graphql-transport-ws, one ``nodeStatusChanged(networkId)`` subscription each) and waits
    until every one has its snapshot. A round patches the coordinator pod's status through the
    apiserver (``restartCount + 1``, one merge patch: exactly one node change) and waits until
    every subscriber has received the resulting ``next`` message, then checks each payload
    carries the new restart count and that no further message follows. R rounds per N.

Limits: the server child may open 65,536 files and this process 2 N + 1,024 (within the hard
limits), enough for N = 10,000.

How to read the figures
    e2e      time from just before the status patch to each subscriber's receipt of the change:
             apiserver write, watch event, informer, observer's database write, publish, then
             the fan-out. p50 / p99 / max over the N subscribers ("max" is when the LAST
             subscriber had it; the goals are below the table).
    spread   first subscriber's receipt to each subscriber's receipt: the fan-out cost alone
             (the publish moment inside the server is not visible from outside; the first
             receipt is the closest observable proxy), p50 / p99 / max over the N subscribers.
    Each figure is the median over the R rounds of that per-round statistic, except "worst":
             the largest e2e max of any round (a single slow round, e.g. a full garbage
             collection in the server, shows there and not in the medians).
    srv CPU  server process CPU time (user + system, from /proc) between the patch and the last
             receipt, median over rounds (10 ms clock ticks): close to "max e2e" means the
             server's CPU, not waiting, was the bottleneck.
    cli CPU  the same for this benchmark process (the N clients): the clients share the machine,
             so a high value means part of the spread is the clients' own receive cost.
    RSS/sub  server resident memory growth (VmRSS) from before the N connections to after all
             snapshots arrived, divided by N; "after" is measured again after the rounds.
    extra    messages beyond the one expected per subscriber and round (should be 0).
    open s   seconds from the first connection attempt to the last snapshot received (50
             handshakes in flight at once).
    The lines after the table set each N's figures against the goals.

``--profile DIR`` also records the server with py-spy while the subscriptions open and during
the rounds (if py-spy is installed
next to this Python); the sampling slows the server, so figures from such a run are not figures.

Usage::

    python bench/fanout.py [--subscribers 1000 5000 10000] [--repeats 5] [--compression none]

Everything is torn down at the end (sockets, server, sandbox), and the whole run is bounded by
``--timeout`` seconds. Only 127.0.0.1 is contacted (the sandbox's apiserver listens there too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import websockets
from kubernetes_asyncio import client, config

from app.config import load_settings
from app.domain.enums import Role
from app.sandbox.handle import Sandbox
from app.sandbox.processes import _die_with_parent, free_ports, stop
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in chaos.py

from bench.harness import cpu_seconds  # sandbox_pods.py takes it from here too

HOST = "127.0.0.1"
NETWORK = "fanout"
PROTOCOL = websockets.Subprotocol("graphql-transport-ws")
MERGE_PATCH = "application/merge-patch+json"
SUBSCRIBE = (
    "subscription($id: ID) { nodeStatusChanged(networkId: $id) "
    "{ id name status pod { phase ready restartCount reason } } }"
)
CREATE = (
    'mutation { networkCreate(input: {name: "' + NETWORK + '", consensus: RAFT}) '
    "{ network { id } userErrors { code message } } }"
)
FIND = (
    'query { network(name: "' + NETWORK + '") { id nodes(first: 10) '
    "{ edges { node { id role status pod { name restartCount } } } } } }"
)
CONNECT_CONCURRENCY = 50  # handshakes in flight at once (the listen backlog is 2048)
WARMUP_SUBSCRIBERS = 5
ROUND_TIMEOUT = 60.0
READY_TIMEOUT = 60.0  # the server answering /readyz
RUNNING_TIMEOUT = 120.0  # the coordinator RUNNING
SETTLE = 0.5  # seconds to wait after a round for any unexpected extra message
MAX_SUBSCRIPTIONS_PER_CONNECTION = 4  # each connection carries exactly one


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server process ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


SERVER_OPEN_FILES = 65536  # a socket per subscriber, and the database, logs, watches


def server_preexec() -> None:
    """In the server child: die with this process, and may open a socket per subscriber."""
    _die_with_parent()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SERVER_OPEN_FILES if hard == resource.RLIM_INFINITY else min(SERVER_OPEN_FILES, hard)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Server:
    """``qaas serve`` as a child process (killed by the kernel if this process dies)."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        log_level: str,
        command: Sequence[str] | None = None,  # instead of `qaas serve` (bench/memory.py)
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_ports(1)[0]
        self.log_path = workdir / f"server-{self.port}.log"
        qaas = Path(sys.executable).with_name("qaas")
        env = {
            **os.environ,
            "QAAS_DATABASE_URL": database_url(workdir),
            "QAAS_KUBECONFIG": str(kubeconfig),
            "QAAS_CLUSTER": "kubeconfig",
            "QAAS_NAMESPACE": "default",
            "QAAS_MAX_SUBSCRIPTIONS": str(MAX_SUBSCRIPTIONS_PER_CONNECTION),
            # Every connection has the same token and address: lift the caps past N.
            "QAAS_MAX_WS_PER_TOKEN": "1000000",
            "QAAS_MAX_WS_PER_ADDRESS": "1000000",
            "QAAS_LOG_LEVEL": log_level,
            "QAAS_CHAIN_PROBE": "off",  # simulated pods: status from pods only
            **(extra_env or {}),
        }
        argv = [str(qaas), "serve"] if command is None else list(command)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [*argv, "--host", HOST, "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=workdir,  # no stray .env file is read
                preexec_fn=server_preexec,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/graphql"

    async def wait_ready(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited during start-up: {self.log_tail()}")
            try:
                response = await http.get(f"http://{HOST}:{self.port}/readyz")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.2)
        raise RuntimeError(f"no /readyz within {READY_TIMEOUT:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        """The end of the server's log (it lives in the temporary folder, removed at exit)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n  " + "\n  ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        stop(self.proc, grace=15.0)


async def graphql(http: httpx.AsyncClient, url: str, query: str) -> dict[str, Any]:
    response = await http.post(url, json={"query": query})
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


@dataclass(frozen=True)
class Coordinator:
    network_id: str
    pod_name: str
    restart_count: int


async def running_coordinator(http: httpx.AsyncClient, url: str) -> Coordinator:
    """The benchmark network's coordinator once RUNNING (creating the network if needed)."""
    if (await graphql(http, url, FIND))["network"] is None:
        created = (await graphql(http, url, CREATE))["networkCreate"]
        if created["userErrors"]:
            raise RuntimeError(f"networkCreate failed: {created['userErrors']}")
        log("network created")
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while time.monotonic() < deadline:
        network = (await graphql(http, url, FIND))["network"]
        for edge in network["nodes"]["edges"]:
            node = edge["node"]
            if node["role"] == "COORDINATOR" and node["status"] == "RUNNING" and node["pod"]:
                pod = node["pod"]
                return Coordinator(network["id"], pod["name"], pod["restartCount"])
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the coordinator was not RUNNING within {RUNNING_TIMEOUT:.0f}s")


# -- the one status change ---------------------------------------------------------------------


class PodPatcher:
    """Bumps the coordinator container's restartCount with one merge patch on pods/status."""

    def __init__(self, api: Any) -> None:
        self.core = client.CoreV1Api(api)
        self.namespaces: dict[str, str] = {}  # pod name -> its namespace, found once

    async def namespace(self, pod: str) -> str:
        if pod not in self.namespaces:
            response = await self.core.list_pod_for_all_namespaces(
                field_selector=f"metadata.name={pod}", _preload_content=False
            )
            items = (await response.json())["items"]
            if len(items) != 1:
                raise RuntimeError(f"{len(items)} pods are named {pod}")
            self.namespaces[pod] = str(items[0]["metadata"]["namespace"])
        return self.namespaces[pod]

    async def container_statuses(self, pod: str) -> list[dict[str, Any]]:
        response = await self.core.read_namespaced_pod_status(
            pod, await self.namespace(pod), _preload_content=False
        )
        body: dict[str, Any] = await response.json()
        statuses: list[dict[str, Any]] = body["status"]["containerStatuses"]
        return statuses

    async def bump(self, pod: str, statuses: list[dict[str, Any]]) -> None:
        """One PATCH; ``statuses`` is the pod's current list (a merge patch replaces lists)."""
        await self.core.patch_namespaced_pod_status(
            pod, self.namespaces[pod], {"status": {"containerStatuses": statuses}},
            _content_type=MERGE_PATCH,
        )  # fmt: skip


# -- the subscribers ---------------------------------------------------------------------------


class Arrivals:
    """Counts `next` messages across all subscribers; resolves a future at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached: asyncio.Future[None] | None = None

    def expect(self, target: int) -> asyncio.Future[None]:
        self.count = 0
        self.target = target
        self.reached = asyncio.get_running_loop().create_future()
        return self.reached

    def arrived(self) -> None:
        self.count += 1
        if self.count >= self.target and self.reached is not None and not self.reached.done():
            self.reached.set_result(None)


@dataclass(eq=False)
class Subscriber:
    connection: websockets.ClientConnection
    times: list[float] = field(default_factory=list)  # receipt of each `next`
    last: str = ""  # the latest `next` message, parsed only after a round
    other: list[str] = field(default_factory=list)  # anything else but ping (error, complete)
    reader: asyncio.Task[None] | None = None


async def read(subscriber: Subscriber, arrivals: Arrivals) -> None:
    """The hot path: timestamp first, then the least work that tells `next` from the rest."""
    connection = subscriber.connection
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in connection:
            now = time.monotonic()
            text = raw if isinstance(raw, str) else raw.decode()
            kind = json.loads(text)["type"]
            if kind == "next":
                subscriber.times.append(now)
                subscriber.last = text
                arrivals.arrived()
            elif kind == "ping":
                await connection.send('{"type":"pong"}')
            else:
                subscriber.other.append(text)


async def subscribe(
    url: str,
    token: str,
    network_id: str,
    compression: str | None,
    arrivals: Arrivals,
    gate: asyncio.Semaphore,
) -> Subscriber:
    async with gate:
        connection = await websockets.connect(
            url, subprotocols=[PROTOCOL], compression=compression,
            ping_interval=None,  # the server's graphql-transport-ws pings are answered instead
            open_timeout=60, close_timeout=5,
        )  # fmt: skip
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await connection.send(json.dumps(init))
        ack = json.loads(await connection.recv())
        if ack["type"] != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        message = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": SUBSCRIBE, "variables": {"id": network_id}},
        }
        await connection.send(json.dumps(message))
    subscriber = Subscriber(connection)
    subscriber.reader = asyncio.create_task(read(subscriber, arrivals))
    return subscriber


async def open_subscribers(
    url: str,
    token: str,
    network_id: str,
    count: int,
    compression: str | None,
    arrivals: Arrivals,
) -> list[Subscriber]:
    """``count`` subscribers, returned once every one has its snapshot."""
    snapshots = arrivals.expect(count)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened = await asyncio.gather(
        *(subscribe(url, token, network_id, compression, arrivals, gate) for _ in range(count)),
        return_exceptions=True,
    )
    subscribers = [s for s in opened if isinstance(s, Subscriber)]
    failures = [e for e in opened if isinstance(e, BaseException)]
    if failures:
        await close_subscribers(subscribers)
        raise RuntimeError(f"{len(failures)} of {count} subscribers failed: {failures[0]!r}")
    try:
        await asyncio.wait_for(snapshots, ROUND_TIMEOUT)
    except TimeoutError:
        await close_subscribers(subscribers)
        raise RuntimeError(f"only {arrivals.count} of {count} snapshots arrived") from None
    return subscribers


async def close_subscribers(subscribers: Sequence[Subscriber]) -> None:
    async def close(subscriber: Subscriber) -> None:
        with contextlib.suppress(Exception):
            await subscriber.connection.close()
        if subscriber.reader is not None:
            subscriber.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber.reader

    for start in range(0, len(subscribers), 200):
        await asyncio.gather(*(close(s) for s in subscribers[start : start + 200]))


# -- one round ---------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Round:
    e2e: tuple[float, float, float]  # p50, p99, max in ms
    spread: tuple[float, float, float]
    server_cpu_ms: float
    client_cpu_ms: float
    extra_messages: int


def summary(values_ms: list[float]) -> tuple[float, float, float]:
    values = sorted(values_ms)
    return percentile(values, 0.50), percentile(values, 0.99), values[-1]


async def one_round(
    subscribers: Sequence[Subscriber],
    arrivals: Arrivals,
    patcher: PodPatcher,
    coordinator: Coordinator,
    expected_restarts: int,
    server_pid: int,
) -> Round:
    statuses = await patcher.container_statuses(coordinator.pod_name)
    statuses[0]["restartCount"] = expected_restarts
    before = [len(s.times) for s in subscribers]
    everyone = arrivals.expect(len(subscribers))
    server_cpu = cpu_seconds(server_pid)
    client_cpu = time.process_time()
    t0 = time.monotonic()
    await patcher.bump(coordinator.pod_name, statuses)
    try:
        await asyncio.wait_for(everyone, ROUND_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(
            f"only {arrivals.count} of {len(subscribers)} subscribers got the change"
        ) from None
    server_cpu_ms = (cpu_seconds(server_pid) - server_cpu) * 1000
    client_cpu_ms = (time.process_time() - client_cpu) * 1000
    receipts = [s.times[k] for s, k in zip(subscribers, before, strict=True)]
    first = min(receipts)
    await asyncio.sleep(SETTLE)
    extra = sum(len(s.times) - k - 1 for s, k in zip(subscribers, before, strict=True))
    for subscriber in subscribers:  # every payload is checked, after the clock stopped
        message = json.loads(subscriber.last)
        payload = message["payload"]
        if payload.get("errors") or subscriber.other:
            raise RuntimeError(f"a subscriber got an error: {payload} {subscriber.other[:1]}")
        restarts = payload["data"]["nodeStatusChanged"]["pod"]["restartCount"]
        if restarts != expected_restarts:
            raise RuntimeError(f"a subscriber saw restartCount {restarts}, not {expected_restarts}")
    return Round(
        e2e=summary([(r - t0) * 1000 for r in receipts]),
        spread=summary([(r - first) * 1000 for r in receipts]),
        server_cpu_ms=server_cpu_ms,
        client_cpu_ms=client_cpu_ms,
        extra_messages=extra,
    )


# -- one N -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    subscribers: int
    rounds: list[Round]
    rss_before_kib: int
    rss_connected_kib: int
    rss_after_kib: int
    open_seconds: float  # from the first connection attempt to the last snapshot

    def median(self, pick: Callable[[Round], float]) -> float:
        return statistics.median(pick(r) for r in self.rounds)

    def row(self) -> str:
        e2e = [statistics.median(r.e2e[i] for r in self.rounds) for i in range(3)]
        spread = [statistics.median(r.spread[i] for r in self.rounds) for i in range(3)]
        connected = (self.rss_connected_kib - self.rss_before_kib) / self.subscribers
        after = (self.rss_after_kib - self.rss_before_kib) / self.subscribers
        extra = sum(r.extra_messages for r in self.rounds)
        worst = max(r.e2e[2] for r in self.rounds)
        return (
            f"{self.subscribers:>6} | {e2e[0]:7.1f} {e2e[1]:7.1f} {e2e[2]:7.1f} {worst:7.1f} | "
            f"{spread[0]:7.1f} {spread[1]:7.1f} {spread[2]:7.1f} | "
            f"{self.median(lambda r: r.server_cpu_ms):7.1f} "
            f"{self.median(lambda r: r.client_cpu_ms):7.1f} | "
            f"{connected:7.1f} {after:7.1f} | {extra:>5} | {self.open_seconds:6.1f}"
        )

    def against_goals(self) -> str:
        """This N's figures next to the goals (issue 14): all served (the e2e max of every
        round) within 100 ms at 1,000, 500 ms at 5,000, 1 s at 10,000; <= 40 KiB a
        subscriber; 1,000 subscriptions opened in <= 2 s (scaled for other N)."""
        worst = max(r.e2e[2] for r in self.rounds)
        goal_ms = next((ms for n, ms in SERVED_GOALS_MS if self.subscribers <= n), None)
        per_sub = (self.rss_connected_kib - self.rss_before_kib) / self.subscribers
        open_goal = OPEN_GOAL_SECONDS_PER_1000 * self.subscribers / 1000
        served = f"goal <= {goal_ms:.0f} ms" if goal_ms is not None else "no goal"
        return (
            f"N={self.subscribers}: all served within {worst:.0f} ms (worst of "
            f"{len(self.rounds)} rounds; {served}) | RSS {per_sub:.1f} KiB/subscriber "
            f"(goal <= {RSS_GOAL_KIB} KiB) | opened in {self.open_seconds:.1f} s "
            f"(goal <= {open_goal:.1f} s)"
        )


HEADER = (
    "     N |  e2e ms: p50     p99     max   worst | spread: p50     p99     max | "
    "CPU ms:srv     cli | RSS/sub KiB: conn  after | extra | open s\n" + "-" * 135
)
SERVED_GOALS_MS = ((1000, 100.0), (5000, 500.0), (10000, 1000.0))  # N at most, all served
RSS_GOAL_KIB = 40
OPEN_GOAL_SECONDS_PER_1000 = 2.0


async def profile_start(out: Path, pid: int) -> asyncio.subprocess.Process:
    spy = Path(sys.executable).with_name("py-spy")
    return await asyncio.create_subprocess_exec(
        str(spy), "record", "--pid", str(pid), "--rate", "500", "--format", "raw",
        "--output", str(out), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def profile_stop(spy: asyncio.subprocess.Process) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        await asyncio.wait_for(spy.wait(), 30)
    except TimeoutError:
        spy.kill()
        await spy.wait()


def database_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{workdir / 'bench.db'}"


async def bench_token(workdir: Path) -> str:
    """An ADMIN token of the tenant the benchmark acts as (its namespace: "default")."""
    url = database_url(workdir)
    await upgrade(url)
    engine = make_engine(url)
    try:
        settings = load_settings(database_url=url, namespace="default")
        _, _, secret = await create_token(
            make_sessionmaker(engine), "bench", Role.ADMIN, settings, "bench"
        )
    finally:
        await engine.dispose()
    return secret


async def bench_one(
    count: int, args: argparse.Namespace, workdir: Path, kubeconfig: Path, api: Any
) -> Result:
    token = await bench_token(workdir)
    server = Server(workdir, kubeconfig, args.server_log_level)
    compression = None if args.compression == "none" else "deflate"
    arrivals = Arrivals()
    patcher = PodPatcher(api)
    subscribers: list[Subscriber] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            await server.wait_ready(http)
            log(f"N={count}: server pid {server.pid} on port {server.port}")
            coordinator = await running_coordinator(http, server.http_url)
        statuses = await patcher.container_statuses(coordinator.pod_name)
        restarts = int(statuses[0].get("restartCount") or 0)

        # Warm-up: lazy imports, caches and the first-use paths, before the baseline RSS.
        warm = await open_subscribers(
            server.ws_url, token, coordinator.network_id, WARMUP_SUBSCRIBERS, compression, arrivals
        )
        restarts += 1
        await one_round(warm, arrivals, patcher, coordinator, restarts, server.pid)
        await close_subscribers(warm)
        await asyncio.sleep(1.0)
        rss_before = rss_kib(server.pid)

        spy = None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            spy = await profile_start(args.profile / f"fanout-{count}-open.txt", server.pid)
            await asyncio.sleep(1.0)
        started = time.monotonic()
        try:
            subscribers = await open_subscribers(
                server.ws_url, token, coordinator.network_id, count, compression, arrivals
            )
        finally:
            if spy is not None:
                await profile_stop(spy)
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
        rss_connected = rss_kib(server.pid)
        log(f"N={count}: {count} subscribers have their snapshot ({took:.1f}s)")

        if args.profile is not None:
            spy = await profile_start(args.profile / f"fanout-{count}.txt", server.pid)
            await asyncio.sleep(1.0)
        rounds = []
        try:
            for index in range(args.repeats):
                restarts += 1
                result = await one_round(
                    subscribers, arrivals, patcher, coordinator, restarts, server.pid
                )
                rounds.append(result)
                log(
                    f"N={count} round {index + 1}: e2e max {result.e2e[2]:.1f} ms, "
                    f"spread max {result.spread[2]:.1f} ms"
                )
        finally:
            if spy is not None:
                await profile_stop(spy)
        rss_after = rss_kib(server.pid)
        return Result(count, rounds, rss_before, rss_connected, rss_after, took)
    except BaseException:
        log(f"N={count} failed; the server's log ends with:{server.log_tail(20)}")
        raise
    finally:
        await close_subscribers(subscribers)
        await asyncio.to_thread(server.stop)


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> list[Result]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    if not configuration.host.startswith(("https://127.0.0.1:", "http://127.0.0.1:")):
        raise RuntimeError(f"the sandbox's apiserver is not on 127.0.0.1: {configuration.host}")
    results = []
    async with client.ApiClient(configuration) as api:
        for count in args.subscribers:
            results.append(await bench_one(count, args, workdir, kubeconfig, api))
    return results


# -- entry point -------------------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log(f"warning: open files limited to {target} (hard limit), {needed} wanted")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compression", choices=("deflate", "none"), default="deflate",
        help="what the clients offer: permessage-deflate (browsers and `websockets` do) or "
        "none; `qaas serve` declines deflate, so both measure the same server",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="overall bound, seconds")
    parser.add_argument("--server-log-level", default="INFO")
    parser.add_argument(
        "--profile", type=Path, default=None,
        help="record the server with py-spy during the rounds (raw collapsed stacks, one file "
        "per N, in this folder); the sampling perturbs the figures",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.subscribers) < 1 or args.repeats < 1:
        parser.error("--subscribers and --repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A socket per subscriber here (the server, a child, raises its own limit).
    raise_fd_limit(max(args.subscribers) + 1024)

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark did not finish within {args.timeout:.0f}s")

    signal.signal(signal.SIGALRM, out_of_time)  # a backstop for the blocking parts
    signal.alarm(int(args.timeout) + 60)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="qaas-fanout-") as tmp:
            workdir = Path(tmp)
            sandbox = Sandbox(workdir / "sandbox")
            try:
                state = sandbox.up(progress=log, detach=False, runtime="simulated", timeout=180)
                deadline = args.timeout - (time.monotonic() - started)  # what is left

                async def bounded() -> list[Result]:
                    async with asyncio.timeout(deadline):
                        return await bench(args, workdir, state.kubeconfig)

                results = asyncio.run(bounded())
            finally:
                log("stopping the sandbox")
                sandbox.down()
    except TimeoutError:
        print(f"the benchmark did not finish within {args.timeout:.0f}s", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    cores = os.cpu_count()
    print(
        f"\nfan-out of one pod status change, {args.repeats} rounds per N (medians), "
        f"{cores} cores, compression={args.compression}"
    )
    print(HEADER)
    for result in results:
        print(result.row())
    print()
    for result in results:
        print(result.against_goals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
