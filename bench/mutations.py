"""Mutation latency: ``networkCreate`` against an authenticated ``{ viewer { role } }``.

What it does
    Starts a sandbox (simulated pods, in a temporary folder, tied to this process), makes one
    ADMIN token in a fresh SQLite database and starts ``qaas serve`` on it (127.0.0.1, pinned
    to core 0, logging at WARNING, the tenant's limits and the mutation rate limit raised so
    that nothing is refused). This process, the load, then runs on core 1 with the sandbox's
    processes (at the lowest scheduling priority: bench/harness.py) and keeps a pool of
    keep-alive HTTP/1.1 connections of its own (``Connections``: a write and a read a request;
    with httpx the load core was late to send by up to 80 ms at half rate, and the tail it
    measured was its own). Three phases, each bounded:

    1. idle round trips: ``--idle`` sequential ``{ viewer { role } }`` (the reference: the same
       authentication, no write), then ``--idle`` sequential ``networkCreate`` with new names;
    2. maximum rate: ``--concurrency`` ``networkCreate`` in flight for ``--seconds`` s;
    3. half that rate, open loop: requests leave on a fixed schedule for ``--seconds`` s
       whatever the earlier ones are doing; a latency counts from the scheduled start, so a
       request that had to wait for a free moment counts its wait.

    Each network created makes the reconciler (kicked by the mutation) write its coordinator's
    Service and StatefulSet into the sandbox in the background: that work shares core 0 with
    the answers, as it would in production, and makes way for them (app/events/foreground.py).
    After the last phase the benchmark counts the nodes whose objects the control loop has not
    made yet, and again ``SETTLE_SECONDS`` later: how far behind its load it was, and how fast it
    catches up. With ``--follower``
    another replica holds the control loop's Lease (made in the sandbox before the server
    starts), so the server only answers, as a replica that does not lead: the answer path
    alone. Every answer must be a 200 without ``errors`` and with empty ``userErrors``, or the
    benchmark fails.

How to read the figures
    p50/p90/p99/max  milliseconds a request, client side, over loopback
    ratio            networkCreate p50 / viewer p50 on the idle server; goal <= 2
    max rate         networkCreate answered per second with ``--concurrency`` in flight
    at half rate     p99 of networkCreate at half the max rate; goal <= 30 ms
    control loop     nodes waiting for their objects when the load stopped, and 10 s later

Usage::

    flock /tmp/qaas-bench.lock .venv/bin/python bench/mutations.py [--idle 200] [--seconds 10]

Needs 2 cores. Bounded by ``--timeout`` seconds (180); exits 2 when out of time. Only
127.0.0.1 is contacted (the sandbox's apiserver listens there too).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.config import load_settings
from app.domain.enums import Role
from app.sandbox.processes import _die_with_parent, free_ports, stop
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in chaos.py

from bench.harness import bounded_with_sandbox, cpu_seconds

HOST = "127.0.0.1"
SERVER_CORE, LOAD_CORE = 0, 1
READY_TIMEOUT = 60.0
SETTLE_SECONDS = 10.0  # after the load: how fast the control loop works through its backlog
LIMIT = 100_000  # networks and nodes the tenant may have; mutations a minute
VIEWER = "{ viewer { role } }"
CREATE = (
    "mutation($name: String!) { networkCreate(input: { name: $name }) "
    "{ network { id status } userErrors { code message } } }"
)
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pinned() -> None:
    """In the server's child process: die with us, run on the server core only."""
    _die_with_parent()
    os.sched_setaffinity(0, {SERVER_CORE})


async def make_token(url: str) -> str:
    """The benchmark's tenant (limits raised) and its ADMIN token's secret."""
    await upgrade(url)
    engine = make_engine(url)
    try:
        settings = load_settings(
            database_url=url, namespace="default",
            tenant_max_networks=LIMIT, tenant_max_nodes=LIMIT,
        )  # fmt: skip
        _, _, secret = await create_token(
            make_sessionmaker(engine), "bench", Role.ADMIN, settings, "bench"
        )
    finally:
        await engine.dispose()
    return secret


async def hold_the_lease(kubeconfig: Path) -> dict[str, str]:
    """``--follower``: the control loop's Lease, held by another replica for an hour, and the
    settings that make the server a follower for that long (it answers, it does not reconcile)."""
    from kubernetes_asyncio import client, config  # only here: the bench's one direct use

    now = datetime.datetime.now(datetime.UTC).isoformat()
    api = await config.new_client_from_config(str(kubeconfig))
    try:
        await client.CoordinationV1Api(api).create_namespaced_lease("default", {
            "metadata": {"name": "qaas-control"},
            "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 3600,
                     "acquireTime": now, "renewTime": now},
        })  # fmt: skip
    finally:
        await api.close()
    return {"QAAS_LEADER_ELECTION": "on", "QAAS_LEASE_SECONDS": "3600",
            "QAAS_LEASE_RENEW_DEADLINE": "3000"}  # fmt: skip


def start_server(
    workdir: Path, database: str, kubeconfig: Path, extra: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_ports(1)[0]
    env = {**os.environ, **extra, "QAAS_DATABASE_URL": database, "QAAS_KUBECONFIG": str(kubeconfig),
           "QAAS_CLUSTER": "kubeconfig", "QAAS_NAMESPACE": "default", "QAAS_LOG_LEVEL": "WARNING",
           "QAAS_CHAIN_PROBE": "off", "QAAS_TENANT_MAX_NETWORKS": str(LIMIT),
           "QAAS_TENANT_MAX_NODES": str(LIMIT), "QAAS_MUTATIONS_PER_MINUTE": str(LIMIT * 60),
           "QAAS_MUTATION_BURST": str(LIMIT), "PYTHONPATH": str(ROOT)}  # fmt: skip
    qaas = Path(sys.executable).with_name("qaas")
    with (workdir / "qaas.log").open("ab") as out:
        proc = subprocess.Popen(
            [str(qaas), "serve", "--host", HOST, "--port", str(port)], stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir, preexec_fn=pinned,
        )  # fmt: skip
    return proc, port


async def wait_ready(http: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("qaas serve exited during start-up (see qaas.log)")
        try:
            if (await http.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}: not ready within {READY_TIMEOUT:.0f}s")


class Connections:
    """Keep-alive HTTP/1.1 connections to the server's /graphql, opened as needed and reused;
    a request is one write and a read of the status line, headers and Content-Length bytes."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (
            f"POST /graphql HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}"
            "\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        while self.free:  # the server closes a connection idle past its keep-alive timeout
            reader, writer = self.free.pop()
            try:
                return await self._exchange(reader, writer, body)
            except asyncio.IncompleteReadError as error:
                if error.partial:
                    raise
                writer.close()
        return await self._exchange(*await asyncio.open_connection(HOST, self.port), body)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
    ) -> tuple[int, bytes]:
        writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {head[:300]!r}")
        answer = await reader.readexactly(int(length.group(1)))
        self.free.append((reader, writer))
        return int(head[9:12]), answer

    def close(self) -> None:
        for _, writer in self.free:
            writer.close()


class Client:
    """Timed GraphQL requests; every answer is checked (200, no errors, no userErrors)."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.names = (f"m-{n}" for n in itertools.count())
        self.late: list[float] = []  # ms from a scheduled start to the send (the load's lag)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        status, text = await self.connections.post(orjson.dumps(body))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {text[:300]!r}")
        answer: dict[str, Any] = orjson.loads(text)
        if answer.get("errors"):
            raise RuntimeError(f"errors: {answer['errors']}")
        data: dict[str, Any] = answer["data"]
        return data

    async def viewer(self) -> float:
        started = time.perf_counter()
        data = await self._post({"query": VIEWER})
        took = time.perf_counter() - started
        if data["viewer"]["role"] != "ADMIN":
            raise RuntimeError(f"viewer: {data}")
        return took * 1000

    async def create(self, started: float | None = None) -> float:
        """One networkCreate; milliseconds from ``started`` (default: now)."""
        if started is None:
            started = time.perf_counter()
        else:
            self.late.append((time.perf_counter() - started) * 1000)
        body = {"query": CREATE, "variables": {"name": next(self.names)}}
        payload = (await self._post(body))["networkCreate"]
        took = time.perf_counter() - started
        if payload["userErrors"] or payload["network"] is None:
            raise RuntimeError(f"networkCreate refused: {payload['userErrors']}")
        return took * 1000


@dataclass(frozen=True)
class Latencies:
    what: str
    ms: list[float]

    def at(self, percent: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.ms)
        rank = max(1, -(-len(ordered) * percent // 100))
        return ordered[int(rank) - 1]

    def row(self) -> str:
        cells = "".join(f"{self.at(p):>8.1f}" for p in (50, 90, 99, 100))
        return f"{self.what:<34}{len(self.ms):>6}{cells}"


async def max_rate(client: Client, seconds: float, concurrency: int) -> tuple[float, Latencies]:
    """``concurrency`` workers, each sending its next networkCreate when the last is answered."""
    stop_at = time.perf_counter() + seconds
    times: list[float] = []

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            times.append(await client.create())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = len(times) / (time.perf_counter() - started)
    return rate, Latencies(f"networkCreate, {concurrency} in flight", times)


async def open_loop(client: Client, rate: float, seconds: float) -> Latencies:
    """networkCreate at ``rate`` a second on a fixed schedule, each timed from its slot."""
    count = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.1
    tasks: list[asyncio.Task[float]] = []
    for i in range(count):
        slot = start + i / rate
        await asyncio.sleep(max(0.0, slot - time.perf_counter()))
        tasks.append(asyncio.create_task(client.create(started=slot)))
    times = await asyncio.gather(*tasks)
    late = sorted(client.late[-count:])
    log(f"the load's own lag from slot to send: p99 {late[int(0.99 * (len(late) - 1))]:.1f} ms, "
        f"max {late[-1]:.1f} ms")  # fmt: skip
    per_second = max(1, int(rate))
    worst = [max(times[i : i + per_second]) for i in range(0, len(times), per_second)]
    log("slowest networkCreate in each second: " + ", ".join(f"{ms:.0f}" for ms in worst) + " ms")
    return Latencies(f"networkCreate at {rate:.0f}/s (open loop)", list(times))


def record(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server for one phase (collapsed stacks to ``--profile``)."""
    if not args.profile:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
               "--duration", str(int(args.seconds)), "--output", args.profile,
               "--nonblocking"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def profiled(recorder: subprocess.Popen[bytes] | None, args: argparse.Namespace) -> None:
    if recorder is not None:
        await asyncio.to_thread(recorder.wait, 30)
        log(f"profiled the {args.profile_phase} phase (slowed by it); stacks in {args.profile}")


def pending_nodes(database: Path) -> int:
    """Nodes whose objects the control loop has not made yet (status PENDING; read-only)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        found = db.execute("SELECT count(*) FROM nodes WHERE status = 'PENDING'").fetchone()
    return int(found[0])


@dataclass(frozen=True)
class Figures:
    viewer: Latencies
    hit: Latencies
    create: Latencies
    busy: Latencies
    rate: float
    half: Latencies
    backlog: tuple[int, int]  # nodes PENDING when the load stopped, and SETTLE_SECONDS later


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> Figures:
    database = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    token = await make_token(database)
    extra = await hold_the_lease(kubeconfig) if args.follower else {}
    server, port = start_server(workdir, database, kubeconfig, extra)
    os.sched_setaffinity(0, {LOAD_CORE})  # the load; the server has core 0
    connections = Connections(port, token)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, f"http://{HOST}:{port}/readyz", server)
            client = Client(connections)
            for _ in range(20):  # warm-up: connections, caches, the tenant's namespace
                await client.viewer()
                await client.create()
            log(
                f"idle: {args.idle} viewer, then {args.idle} networkCreate each followed by "
                "a viewer, one at a time"
            )
            hits = [await client.viewer() for _ in range(args.idle)]
            create_ms: list[float] = []
            computed: list[float] = []
            for _ in range(args.idle):
                create_ms.append(await client.create())
                computed.append(await client.viewer())  # the create dropped the cached answer
            viewer = Latencies("{ viewer { role } }, computed", computed)
            hit = Latencies("{ viewer { role } }, cached", hits)
            create = Latencies("networkCreate, idle", create_ms)
            log(f"maximum rate: {args.concurrency} in flight for {args.seconds:.0f} s")
            recorder = record(args, server.pid) if args.profile_phase == "max" else None
            rate, busy = await max_rate(client, args.seconds, args.concurrency)
            await profiled(recorder, args)
            log(f"{rate:.0f} req/s; now {rate / 2:.0f}/s on a schedule for {args.seconds:.0f} s")
            recorder = record(args, server.pid) if args.profile_phase == "half" else None
            cpu, began = cpu_seconds(server.pid), time.perf_counter()
            half = await open_loop(client, rate / 2, args.seconds)
            busy_share = (cpu_seconds(server.pid) - cpu) / (time.perf_counter() - began)
            log(f"the server's core was {100 * busy_share:.0f}% busy during that phase")
            await profiled(recorder, args)
            backlog = later = 0
            if not args.follower:  # a follower makes no objects
                backlog = await asyncio.to_thread(pending_nodes, workdir / "bench.db")
                log(f"{backlog} nodes wait for their objects; {SETTLE_SECONDS:.0f} s without load")
                await asyncio.sleep(SETTLE_SECONDS)
                later = await asyncio.to_thread(pending_nodes, workdir / "bench.db")
    except Exception:
        log(
            "the server's log ends with:\n"
            + "".join((workdir / "qaas.log").open().readlines()[-30:])
        )
        raise
    finally:
        connections.close()
        stop(server, grace=15.0)
    return Figures(viewer, hit, create, busy, rate, half, (backlog, later))


def report(figures: Figures, args: argparse.Namespace) -> str:
    ratio = figures.create.at(50) / figures.viewer.at(50)
    header = f"{'':<34}{'n':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  (ms)"
    rows = [figures.hit, figures.viewer, figures.create, figures.busy, figures.half]
    return "\n".join([
        f"\nqaas serve on 1 core, SQLite, load on the other; {os.cpu_count()} cores"
        + (" (a follower: no control loop)" if args.follower else ""),
        header, *(r.row() for r in rows),
        f"idle: networkCreate p50 {figures.create.at(50):.1f} ms | reference "
        f"{{ viewer {{ role }} }} computed p50 {figures.viewer.at(50):.1f} ms | ratio "
        f"{ratio:.2f} | goal <= 2.00 (against the cached viewer: "
        f"{figures.create.at(50) / figures.hit.at(50):.2f})",
        f"max rate {figures.rate:.0f} req/s ({args.concurrency} in flight); at half "
        f"({figures.rate / 2:.0f}/s): p50 {figures.half.at(50):.1f} ms, p99 "
        f"{figures.half.at(99):.1f} ms | goal p99 <= 30 ms",
        *([f"control loop: {figures.backlog[0]} nodes waited for their objects when the load "
           f"stopped, {figures.backlog[1]} {SETTLE_SECONDS:.0f} s later "
           f"({(figures.backlog[0] - figures.backlog[1]) / SETTLE_SECONDS:.1f}/s)"]
          if not args.follower else []),
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=200, help="sequential requests of each")
    parser.add_argument("--seconds", type=float, default=10.0, help="each loaded phase")
    parser.add_argument("--concurrency", type=int, default=16, help="in flight at max rate")
    parser.add_argument("--follower", action="store_true",
                        help="another replica holds the control loop's Lease: the server only "
                        "answers (the answer path alone)")  # fmt: skip
    parser.add_argument(
        "--cluster-anywhere",
        action="store_true",
        help="let the sandbox's processes run on the server's core too",
    )
    parser.add_argument("--profile", help="record the server with py-spy in one phase")
    parser.add_argument("--profile-phase", choices=("max", "half"), default="max",
                        help="the phase --profile records: max rate or half of it")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=180.0, help="the whole run, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 cores (the server on core 0, the load on core 1)", file=sys.stderr)
        return 2

    figures = bounded_with_sandbox(
        "qaas-mutations-",
        args.timeout,
        log,
        lambda workdir, kubeconfig: bench(args, workdir, kubeconfig),
        cluster_cores=None if args.cluster_anywhere else {LOAD_CORE},
    )
    if figures is None:
        return 2
    print(report(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
