"""A SQLite write transaction, on the event loop's thread (the project's engine) against
aiosqlite's own thread (the reference), with the loop idle and with the loop kept busy.

What it does
    Makes two engines on one SQLite file in a temporary folder: ``make_engine`` (statements run
    on the loop's thread, app/store/sqlite_loop.py) and SQLAlchemy's plain aiosqlite engine
    (every call handed to aiosqlite's thread and back through the loop). For each it times
    ``--transactions`` write transactions of 10 statements (``BEGIN IMMEDIATE``, 4 reads,
    4 inserts, ``COMMIT``: about what a ``networkCreate`` sends), one after the other, first
    with nothing else on the loop, then with 3 tasks that each take ~0.5 ms of CPU per turn of
    the loop (what other requests do to a server). The lock is held for the whole transaction,
    so this is how long every other writer of the process waits behind one.

Usage::

    flock /tmp/qaas-bench.lock .venv/bin/python bench/sqlite_loop.py [--transactions 200]

Pin it to one core (``taskset -c 0``) to see a server's conditions. Bounded: a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's app/

from app.store.engine import make_engine, make_sessionmaker


async def transaction(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        await (await session.connection()).exec_driver_sql("BEGIN IMMEDIATE")
        for k in range(4):
            await session.execute(text("SELECT * FROM log WHERE id = :k"), {"k": k})
        for _ in range(4):
            await session.execute(text("INSERT INTO log (line) VALUES ('x')"))
        await session.commit()


async def timed(engine: AsyncEngine, count: int) -> float:
    """Median milliseconds of a transaction, ``count`` of them one after the other."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await transaction(engine)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def busy_loop(stop: asyncio.Event) -> None:
    while not stop.is_set():
        sum(range(20_000))  # about half a millisecond of CPU
        await asyncio.sleep(0)


async def measure(engine: AsyncEngine, count: int) -> tuple[float, float]:
    for _ in range(20):  # warm-up: the connection, the statement cache
        await transaction(engine)
    idle = await timed(engine, count)
    stop = asyncio.Event()
    others = [asyncio.create_task(busy_loop(stop)) for _ in range(3)]
    try:
        busy = await timed(engine, max(20, count // 4))
    finally:
        stop.set()
        await asyncio.gather(*others)
    return idle, busy


async def main(count: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        ours = make_engine(url)
        async with ours.begin() as connection:
            await connection.execute(text("CREATE TABLE log (id INTEGER PRIMARY KEY, line TEXT)"))
        reference = create_async_engine(url, connect_args={"timeout": 30})
        try:
            loop_idle, loop_busy = await measure(ours, count)
            thread_idle, thread_busy = await measure(reference, count)
        finally:
            await ours.dispose()
            await reference.dispose()
    return (
        f"a 10-statement write transaction, median ms (loop idle | loop kept busy by 3 tasks)\n"
        f"  on the loop's thread (make_engine)      {loop_idle:6.2f} | {loop_busy:7.2f}\n"
        f"  aiosqlite's thread (reference)          {thread_idle:6.2f} | {thread_busy:7.2f}\n"
        f"  busy: {thread_busy / loop_busy:.1f}x shorter on the loop's thread"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=200)
    print(asyncio.run(asyncio.wait_for(main(parser.parse_args().transactions), 120)))
