"""Server memory per idle subscriber, and who holds it (issue 14).

What it does
    Starts a sandbox of simulated pods and a QaaS server as a child process (``qaas serve``
    on 127.0.0.1, SQLite in the temporary folder, the same set-up as bench/fanout.py), waits
    until the benchmark network's coordinator is RUNNING, warms the server up with a few
    subscriptions, then opens N idle ``nodeStatusChanged`` subscriptions (one WebSocket each)
    and prints the growth of the server's resident memory (VmRSS) divided by N.

    With ``--trace`` the server runs under tracemalloc (one frame per allocation) and takes a
    snapshot on SIGUSR1 before and after the N connections; the difference is printed grouped
    by the file that allocated, in bytes per subscriber (``--by line``: by line). Tracing
    itself costs memory, so the RSS figure of a traced run is not the figure: take it from a
    run without ``--trace``.

Usage::

    python bench/memory.py [--subscribers 1000] [--trace] [--by file|line] [--top 30]

Bounded by ``--timeout`` seconds; everything is torn down at the end. Only 127.0.0.1 is
contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.append(ROOT)

from bench.fanout import (  # noqa: E402
    Arrivals,
    Server,
    bench_token,
    close_subscribers,
    log,
    open_subscribers,
    raise_fd_limit,
    rss_kib,
    running_coordinator,
)
from bench.harness import bounded_with_sandbox  # noqa: E402

SNAPSHOT_ENV = "QAAS_BENCH_SNAPSHOT"  # the child writes snapshot <n> to <this>.<n>
WARMUP = 5
SNAPSHOT_TIMEOUT = 120.0


def child(argv: Sequence[str]) -> int:
    """`qaas serve` with tracemalloc on, a snapshot on each SIGUSR1."""
    from app.cli.parser import main as qaas

    base = os.environ[SNAPSHOT_ENV]
    taken = [0]

    def snapshot(_signum: int, _frame: Any) -> None:
        taken[0] += 1
        tracemalloc.take_snapshot().dump(f"{base}.{taken[0]}.tmp")
        os.rename(f"{base}.{taken[0]}.tmp", f"{base}.{taken[0]}")

    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, snapshot)
    return qaas(["serve", *argv])


class TracedServer(Server):
    """The server under tracemalloc (see ``child``)."""

    def __init__(self, workdir: Path, kubeconfig: Path, log_level: str) -> None:
        self.snapshots = workdir / "snapshot"
        super().__init__(
            workdir, kubeconfig, log_level, command=[sys.executable, __file__, "--child"],
            extra_env={SNAPSHOT_ENV: str(self.snapshots)},
        )  # fmt: skip

    async def snapshot(self, number: int) -> tracemalloc.Snapshot:
        self.proc.send_signal(signal.SIGUSR1)
        path = Path(f"{self.snapshots}.{number}")
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT
        while not await asyncio.to_thread(path.exists):
            if time.monotonic() > deadline:
                raise RuntimeError("the server wrote no tracemalloc snapshot")
            await asyncio.sleep(0.2)
        return tracemalloc.Snapshot.load(str(path))


async def measure(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> None:
    token = await bench_token(workdir)
    import httpx

    server: Server = (
        TracedServer(workdir, kubeconfig, "WARNING")
        if args.trace
        else Server(workdir, kubeconfig, "WARNING")
    )
    arrivals = Arrivals()
    subscribers: list[Any] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            await server.wait_ready(http)
            coordinator = await running_coordinator(http, server.http_url)
        warm = await open_subscribers(
            server.ws_url, token, coordinator.network_id, WARMUP, None, arrivals
        )
        await close_subscribers(warm)
        await asyncio.sleep(1.0)
        before_snapshot = await server.snapshot(1) if isinstance(server, TracedServer) else None
        rss_before = rss_kib(server.pid)
        subscribers = await open_subscribers(
            server.ws_url, token, coordinator.network_id, args.subscribers, None, arrivals
        )
        await asyncio.sleep(1.0)
        rss_after = rss_kib(server.pid)
        n = args.subscribers
        print(
            f"\nN={n}: server RSS {rss_before} -> {rss_after} KiB: "
            f"{(rss_after - rss_before) / n:.1f} KiB per idle subscriber"
            + (" (traced: not the figure)" if args.trace else "")
            + " (goal <= 40 KiB)"
        )
        if isinstance(server, TracedServer) and before_snapshot is not None:
            after_snapshot = await server.snapshot(2)
            key = "filename" if args.by == "file" else "lineno"
            diffs = after_snapshot.compare_to(before_snapshot, key)
            total = sum(d.size_diff for d in diffs)
            print(f"tracemalloc: {total / n / 1024:.1f} KiB per subscriber in Python objects")
            print(f"{'bytes/sub':>10} {'blocks/sub':>10}  where")
            for diff in diffs[: args.top]:
                frame = diff.traceback[0]
                where = frame.filename.replace(ROOT + "/", "")
                where = where.split("site-packages/")[-1]
                if args.by == "line":
                    where += f":{frame.lineno}"
                print(f"{diff.size_diff / n:10.0f} {diff.count_diff / n:10.1f}  {where}")
    finally:
        await close_subscribers(subscribers)
        await asyncio.to_thread(server.stop)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the server")
    parser.add_argument("--by", choices=("file", "line"), default="file")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=600.0, help="overall bound, seconds")
    args = parser.parse_args(argv)
    if args.subscribers < 1:
        parser.error("--subscribers must be positive")
    raise_fd_limit(args.subscribers + 1024)
    done = bounded_with_sandbox(
        "qaas-memory-", args.timeout, log, lambda workdir, kube: measure(args, workdir, kube)
    )
    return 2 if done is None else 0


if __name__ == "__main__":
    sys.exit(main())
