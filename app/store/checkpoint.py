"""SQLite's WAL checkpoints on a thread of their own, never inside a commit on the event loop.

Under WAL a commit appends its pages to the ``-wal`` file (no fsync with ``synchronous=NORMAL``);
a checkpoint copies them back into the database file and syncs both. By default SQLite runs one
inside whichever commit finds the WAL past 1,000 pages, and the server's statements run on the
event loop's thread (``sqlite_loop.py``): a commit that checkpointed held the loop for the
disk's sync, 1.2 s once under a stream of mutations (bench/mutations.py, sampled), while every
answer waited. ``qaas serve``'s engine turns that off (``make_engine(..., wal_checkpoints=
False)``) and runs ``WalCheckpointer``: every ``CHECKPOINT_SECONDS`` a PASSIVE checkpoint on a
connection of its own, in a worker thread. PASSIVE waits for no reader and no writer; the
loop's writers go on appending meanwhile, and the WAL starts over from its beginning once a
checkpoint has caught up. Other processes (the CLI, tests) keep SQLite's default; the last
connection to close checkpoints whatever is left.

Example::

    checkpointer = WalCheckpointer("/var/lib/qaas/qaas.db")
    task = asyncio.create_task(checkpointer.run())   # until cancelled
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import urllib.parse

log = logging.getLogger("qaas.store")

CHECKPOINT_SECONDS = 1.0


class WalCheckpointer:
    def __init__(self, path: str, every: float = CHECKPOINT_SECONDS) -> None:
        self.path, self.every = path, every
        self.checkpoints = 0  # completed (for tests)
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one checkpoint at a time, whichever thread runs it

    async def run(self) -> None:
        """Checkpoint every ``every`` seconds until cancelled; a failure is logged and tried
        again at the next turn (a checkpoint left undone only lets the WAL grow)."""
        try:
            while True:
                await asyncio.sleep(self.every)
                try:
                    await asyncio.to_thread(self.checkpoint)
                except sqlite3.Error as error:
                    log.warning("SQLite checkpoint of %s failed: %s", self.path, error)
        finally:
            await asyncio.to_thread(self.close)

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames checkpointed); None while
        the database file does not exist yet (it is not made here)."""
        with self._lock:
            if self._connection is None:
                if not os.path.exists(self.path):
                    return None
                uri = f"file:{urllib.parse.quote(self.path)}?mode=rw"
                self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
