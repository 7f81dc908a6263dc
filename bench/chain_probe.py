"""What the chain probe costs: 200 targets (default) against a local JSON-RPC server.

The server (a subprocess, so its CPU is not counted) answers the recorded Quorum raft answers of
tests/chain/server.py on 127.0.1.1..127.0.1.N (loopback only). The probe runs in this process
with the default settings (interval 5 s, timeout 3 s, 20 at a time) for ``--seconds``, its sink
doing nothing (the database write is throttled to status changes and one block write per
``QAAS_CHAIN_PROBE_BLOCK_EVERY``, see app/control/chain.py); then once more with no pause
between rounds, to show the ceiling. Prints HTTP requests/s (one JSON-RPC batch of 8 calls per
node per round), rounds, the round's duration and this process's CPU (user+system / wall).

    .venv/bin/python bench/chain_probe.py [--targets 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.chain.probe import ChainProbe, Reading, Target
from app.chain.rpc import RpcClient
from app.domain.enums import Consensus
from app.domain.probe_scope import probe_networks

PORT = 20010
SERVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from aiohttp import web
from tests.chain.server import RAFT, RecordedNode
async def main():
    node = RecordedNode(RAFT)
    app = web.Application(); app.router.add_post("/", node.handle)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    for i in range(1, {n} + 1):
        await web.TCPSite(runner, f"127.0.1.{{i}}", {port}).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def measure(targets: list[Target], seconds: float, interval: float) -> dict[str, float]:
    async def listed() -> list[Target]:
        return targets

    async def sink(_: Target, __: Reading) -> None:
        return None

    async with RpcClient(timeout=3.0, connections=20) as rpc:
        probe = ChainProbe(rpc, listed, sink, networks=probe_networks("127.0.0.0/8"),
                           interval=interval, concurrency=20)  # fmt: skip
        cpu, wall = time.process_time(), time.monotonic()
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(seconds)
        probe.stop()
        task.cancel()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        answered = probe.stats.by_outcome.get("answering", 0)
        silent = probe.stats.by_outcome.get("silent", 0)
        return {"requests_per_s": rpc.requests / wall, "rounds": probe.stats.rounds,
                "round_s": probe.stats.last_round_seconds, "cpu": cpu / wall,
                "answered": answered, "silent": silent}  # fmt: skip


def start_server(n: int) -> subprocess.Popen[str]:
    root = str(Path(__file__).resolve().parent.parent)
    code = SERVER.format(root=root, n=n, port=PORT)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    server = start_server(args.targets)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        targets = [Target(f"n{i}", f"127.0.1.{i}", Consensus.RAFT, port=PORT)
                   for i in range(1, args.targets + 1)]  # fmt: skip
        for label, interval in (("interval 5 s (default)", 5.0), ("no pause (ceiling)", 0.0)):
            r = await measure(targets, args.seconds, interval)
            print(f"{args.targets} targets, {label}: {r['requests_per_s']:.1f} requests/s, "
                  f"{r['rounds']:.0f} rounds, last round {r['round_s'] * 1000:.0f} ms, "
                  f"CPU {r['cpu'] * 100:.1f} % of a core, answered {r['answered']:.0f}, "
                  f"silent {r['silent']:.0f}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
