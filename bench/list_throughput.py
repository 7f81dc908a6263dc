"""List throughput: QaaS's network list against the same shape served by Strawberry from memory.

What it does
    Starts a sandbox (simulated pods, in a temporary folder, tied to this process), seeds a
    SQLite database through the service layer with 50 networks of 4 nodes (a coordinator and
    three peers), and starts two servers on 127.0.0.1, both pinned to core 0:
    ``qaas serve`` on that database with its response cache off (its reconciler brings the
    nodes up in the sandbox, which has room for 80 pods: the others stay PENDING; the benchmark
    waits until the statuses stop changing), and the reference, ``bench/reference_server.py``
    (Strawberry under uvicorn, the same types and fields, plain Python objects, no database).
    Then ``wrk`` on core 1 (16 connections, one thread) sends the query below as a GET,
    alternating QaaS and reference runs (3 x 10 s each, after a 2 s warm-up of each).

How to read the figures
    req/s    wrk's requests per second, the median of the runs
    p50/p99  wrk's latency percentiles, the median of the runs
    ratio    QaaS req/s / reference req/s; the goal is >= 0.70

Usage::

    flock /tmp/qaas-bench.lock .venv/bin/python bench/list_throughput.py [--runs 3] [--seconds 10]

Needs ``wrk`` (Debian: ``apt-get install wrk``; ``./dev setup`` installs it) and 2 cores. The
whole run stops by itself within ``--timeout`` seconds (180). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from app.config import load_settings
from app.domain.enums import Consensus, Role
from app.sandbox.processes import _die_with_parent, free_ports, stop
from app.services import networks, nodes
from app.services.results import commit_unless_refused
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in chaos.py

from bench.harness import bounded_with_sandbox

HOST = "127.0.0.1"
QUERY = (
    "{ networks(first: 50) { edges { node { id name consensus status "
    "nodes(first: 10) { edges { node { id name role status } } } } } } }"
)
SERVER_CORE, LOAD_CORE = 0, 1
READY_TIMEOUT = 60.0
SETTLE_TIMEOUT = 90.0
SETTLED = 5.0
WARMUP_SECONDS = 2
DEADLINE = 300.0  # seconds a node may take to start
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pinned() -> None:
    """In a server's child process: die with us, run on the server core only."""
    _die_with_parent()
    os.sched_setaffinity(0, {SERVER_CORE})


def start(
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=cwd, preexec_fn=pinned,
        )  # fmt: skip


async def seed(url: str, count: int, size: int) -> str:
    """The benchmark's tenant, its ADMIN token (returned) and its networks, made through the
    service layer as mutations make them."""
    await upgrade(url)
    engine = make_engine(url)
    try:
        settings = load_settings(
            database_url=url, namespace="default",
            tenant_max_networks=count, tenant_max_nodes=count * size,
        )  # fmt: skip
        sessions = make_sessionmaker(engine)
        tenant, _, secret = await create_token(sessions, "bench", Role.ADMIN, settings, "bench")
        for n in range(count):
            create = partial(networks.create_network, tenant_id=tenant.id, name=f"net-{n:03}",
                             consensus=Consensus.RAFT, start_deadline=DEADLINE)  # fmt: skip
            made = await commit_unless_refused(sessions, create)
            assert made.network is not None, made.errors
            for i in range(1, size):
                add = partial(nodes.add_node, tenant_id=tenant.id, network_id=made.network.id,
                              name=f"peer-{i}", start_deadline=DEADLINE)  # fmt: skip
                added = await commit_unless_refused(sessions, add)
                assert not added.errors, added.errors
    finally:
        await engine.dispose()
    return secret


async def wait_ready(http: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited during start-up")
        try:
            if (await http.get(url)).status_code < 500:
                return
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}: not ready within {READY_TIMEOUT:.0f}s")


async def answer(http: httpx.AsyncClient, url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(url, json={"query": QUERY}, headers=headers)
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{url}: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


async def settled(http: httpx.AsyncClient, url: str, token: str) -> None:
    """Until the nodes' statuses stop changing (SETTLED seconds alike): the sandbox runs 80
    pods (its CPU capacity, 100m a pod), the other nodes stay PENDING (Unschedulable)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last: list[str] = []
    since = time.monotonic()
    while time.monotonic() < deadline:
        edges = (await answer(http, url, token))["networks"]["edges"]
        statuses = [n["node"]["status"] for e in edges for n in e["node"]["nodes"]["edges"]]
        if statuses != last:
            last, since = statuses, time.monotonic()
        elif time.monotonic() - since >= SETTLED:
            break
        await asyncio.sleep(0.5)
    counts = {status: last.count(status) for status in sorted(set(last))}
    log(f"node statuses: {counts}")


@dataclass(frozen=True)
class Run:
    rate: float  # requests per second
    p50: float  # milliseconds
    p99: float


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, token: str | None, seconds: int, connections: int) -> Run:
    """One wrk run on the load core: its rate and latency percentiles."""
    get = f"{url}?{urllib.parse.urlencode({'query': QUERY})}"
    command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}",
               f"-d{seconds}s", "--latency", get]  # fmt: skip
    if token:
        command[-1:-1] = ["-H", f"Authorization: Bearer {token}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True)
    out = done.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} answers were not 200")
    percent = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(number) * UNITS[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Run(rate, ms(percent["50"]), ms(percent["99"]))


def summary(runs: list[Run]) -> Run:
    return Run(*(statistics.median(getattr(r, f) for r in runs) for f in ("rate", "p50", "p99")))


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> tuple[Run, Run]:
    database = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    token = await seed(database, args.networks, args.nodes)
    qaas_port, reference_port = free_ports(2)
    env = {**os.environ, "QAAS_DATABASE_URL": database, "QAAS_KUBECONFIG": str(kubeconfig),
           "QAAS_CLUSTER": "kubeconfig", "QAAS_NAMESPACE": "default", "QAAS_LOG_LEVEL": "WARNING",
           "QAAS_CHAIN_PROBE": "off", "PYTHONPATH": str(ROOT),
           # The cost of computing the answer: with the response cache on, a list nothing
           # changes is answered from memory (bench/polled_list.py measures the cache).
           "QAAS_RESPONSE_CACHE_ENTRIES": "0"}  # fmt: skip
    qaas = Path(sys.executable).with_name("qaas")
    servers = [
        start([str(qaas), "serve", "--host", HOST, "--port", str(qaas_port)], env,
              workdir / "qaas.log", workdir),
        start([sys.executable, str(ROOT / "bench" / "reference_server.py"), "--port",
               str(reference_port), "--networks", str(args.networks), "--nodes", str(args.nodes)],
              env, workdir / "reference.log", workdir),
    ]  # fmt: skip
    qaas_url = f"http://{HOST}:{qaas_port}/graphql"
    reference_url = f"http://{HOST}:{reference_port}/graphql"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, f"http://{HOST}:{qaas_port}/readyz", servers[0])
            await wait_ready(http, reference_url, servers[1])
            await settled(http, qaas_url, token)
            ours, theirs = await answer(http, qaas_url, token), await answer(http, reference_url)
            assert len(ours["networks"]["edges"]) == len(theirs["networks"]["edges"])
        targets = [("QaaS", qaas_url, token), ("reference", reference_url, None)]
        for _, url, key in targets:
            await asyncio.to_thread(wrk, url, key, WARMUP_SECONDS, args.connections)
        runs: dict[str, list[Run]] = {"QaaS": [], "reference": []}
        for round_ in range(args.runs):
            for name, url, key in targets:
                run = await asyncio.to_thread(wrk, url, key, args.seconds, args.connections)
                log(f"run {round_ + 1} {name}: {run.rate:.0f} req/s, p50 {run.p50:.1f} ms, "
                    f"p99 {run.p99:.1f} ms")  # fmt: skip
                runs[name].append(run)
        if args.profile:
            profile(args, servers[0].pid, qaas_url, token)
    finally:
        for server in servers:
            stop(server, grace=15.0)
    return summary(runs["QaaS"]), summary(runs["reference"])


def profile(args: argparse.Namespace, pid: int, url: str, token: str) -> None:
    """One more QaaS run with py-spy sampling the server (collapsed stacks to the file named
    by --profile); sampling slows the server, so this run's figures are not figures."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
               "--duration", str(args.seconds), "--output", args.profile,
               "--nonblocking"]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as recorder:
        run = wrk(url, token, args.seconds, args.connections)
        recorder.wait(timeout=30)
    log(f"profiled run (not a figure): {run.rate:.0f} req/s; stacks in {args.profile}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--seconds", type=int, default=10, help="length of each run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=4, help="nodes per network")
    parser.add_argument("--timeout", type=float, default=180.0, help="the whole run, seconds")
    parser.add_argument("--profile", help="also record the server with py-spy to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk (or ./dev setup)", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 cores (servers on core 0, wrk on core 1)", file=sys.stderr)
        return 2

    measured = bounded_with_sandbox(
        "qaas-list-",
        args.timeout,
        log,
        lambda workdir, kubeconfig: bench(args, workdir, kubeconfig),
    )
    if measured is None:
        return 2
    ours, theirs = measured
    print(f"\nnetworks(first: {args.networks}) with nodes(first: 10), {args.networks} x "
          f"{args.nodes} nodes, {args.connections} connections, medians of {args.runs} x "
          f"{args.seconds} s, {os.cpu_count()} cores")  # fmt: skip
    print(f"QaaS {ours.rate:.0f} req/s (p50 {ours.p50:.1f} ms, p99 {ours.p99:.1f} ms) | "
          f"reference {theirs.rate:.0f} req/s (p50 {theirs.p50:.1f} ms, p99 {theirs.p99:.1f} ms)"
          f" | ratio {ours.rate / theirs.rate:.2f} | goal >= 0.70")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
