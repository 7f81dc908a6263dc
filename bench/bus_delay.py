"""Event delay across replicas: a node change committed on one replica, until a subscriber on
another replica has it; next to the in-process bus's delay (one replica).

What it does
    Makes a fresh PostgreSQL database on the server of ``--postgres-url`` (dropped at the end),
    migrates it, creates one tenant, network and node, and starts two PostgreSQL buses (two
    replicas in one process: each has its own listening connection and does its own reads). A
    round writes the node through the node writer of replica A (a new restart count: one
    change, NOTIFY in its transaction) and waits until a subscriber on replica B has that
    revision; rounds are sequential (a delay, not a throughput). Then the same N rounds with
    the in-process bus (writer and subscriber on one bus).

How to read the figures
    delay   from the writer's publish right after its commit (the moment the in-process bus
            hands the change over) to the subscriber's receipt, p50 / p99 / max over N rounds.
            Across replicas this is: PostgreSQL delivering the NOTIFY, replica B reading the
            node (one SELECT) and its fan-out. In-process: the fan-out and one loop turn.

Usage::

    python bench/bus_delay.py [--rounds 200] [--postgres-url postgresql+asyncpg://...]

Bounded: ``--timeout`` seconds for the whole run (default 60); each round waits 5 s at most.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in chaos.py

from app.config import load_settings
from app.control.node_writer import NodeWriter
from app.domain.enums import Consensus, Role
from app.events.bus import EventBus, InProcessBus, NodeChange
from app.events.pg_bus import PostgresBus
from app.services.networks import create_network
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from app.store.models import Node
from app.store.node_feed import NodeFeed
from app.store.unit import UnitOfWork

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ROUND_SECONDS = 5.0


class StampingWriter(NodeWriter):
    """The node writer, noting when it published each revision (right after its commit)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
        super().__init__(sessions, bus)
        self.published: dict[int, float] = {}

    def publish(self, change: NodeChange) -> None:
        self.published[change.snapshot.revision] = time.perf_counter()
        super().publish(change)


@asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    admin = make_url(admin_url)
    name = f"qaas_bench_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()


async def one_node(sessions: async_sessionmaker[AsyncSession], url: str) -> str:
    settings = load_settings(database_url=url, namespace="bench")
    tenant, _, _ = await create_token(sessions, "bench", Role.ADMIN, settings)
    async with UnitOfWork.begin(sessions) as work:
        result = await create_network(work, tenant.id, "delay", Consensus.RAFT, 300.0)
        assert result.network is not None, result.errors
        network_id = result.network.id
    async with sessions() as session:
        node_id = await session.scalar(select(Node.id).where(Node.network_id == network_id))
    assert node_id is not None
    return node_id


async def rounds(
    writer: StampingWriter, listener: EventBus, node_id: str, count: int
) -> list[float]:
    delays: list[float] = []
    async with listener.subscribe(node_id=node_id) as mailbox:
        for i in range(count):

            async def restarted(_: AsyncSession, row: Node, n: int = i + 1) -> bool:
                row.restart_count = n
                return True

            view = await writer.write(node_id, restarted)
            assert view is not None
            async with asyncio.timeout(ROUND_SECONDS):
                while True:
                    change = await mailbox.get()
                    if change.snapshot.revision >= view.revision:
                        break
            delays.append(time.perf_counter() - writer.published[view.revision])
    return delays


def line(name: str, delays: Sequence[float]) -> str:
    ms = sorted(d * 1000 for d in delays)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:<28} p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   "
            f"max {ms[-1]:7.2f} ms   (n={len(ms)})")  # fmt: skip


async def bench(args: argparse.Namespace) -> list[str]:
    async with fresh_database(args.postgres_url) as url:
        await upgrade(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        try:
            node_id = await one_node(sessions, url)
            a, b = PostgresBus(url, NodeFeed(sessions)), PostgresBus(url, NodeFeed(sessions))
            for bus in (a, b):
                await bus.start()
            try:
                for bus in (a, b):
                    await asyncio.wait_for(bus.connected.wait(), 10)
                across = await rounds(StampingWriter(sessions, a), b, node_id, args.rounds)
                reads = b.reads
            finally:
                for bus in (a, b):
                    await bus.stop()
            local = InProcessBus()
            here = await rounds(StampingWriter(sessions, local), local, node_id, args.rounds)
        finally:
            await engine.dispose()
    return [
        line("across replicas (postgres)", across),
        line("in-process (reference)", here),
        f"replica B read the node {reads} times for {args.rounds} changes",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="sequential changes")
    parser.add_argument("--postgres-url", default=DEFAULT_URL, help="a server to make a db on")
    parser.add_argument("--timeout", type=float, default=60.0, help="the whole run, seconds")
    args = parser.parse_args(argv)

    async def bounded() -> list[str]:
        async with asyncio.timeout(args.timeout):
            return await bench(args)

    try:
        lines = asyncio.run(bounded())
    except TimeoutError:
        print(f"out of time after {args.timeout:g} s", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
