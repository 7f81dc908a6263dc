"""SQLite's WAL checkpoints run off the event loop in ``qaas serve`` (app/store/checkpoint.py):
its engine's commits never checkpoint, ``WalCheckpointer`` does, on a connection of its own,
and the server's lifespan runs one for a SQLite file. Real SQLite files in a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.config import load_settings
from app.server import create_app
from app.store.checkpoint import WalCheckpointer
from app.store.engine import make_engine, sqlite_file
from tests.helpers import eventually

ROWS = 3000  # about 1,500 pages of WAL, past SQLite's automatic checkpoint at 1,000
BOUND = 30.0


async def _write_pages(url: str, wal_checkpoints: bool) -> None:
    engine = make_engine(url, wal_checkpoints=wal_checkpoints)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE filler (body TEXT)"))
        for _start in range(0, ROWS, 100):  # many commits, as a server makes them
            async with engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO filler VALUES (:body)"),
                    [{"body": "x" * 2000} for _ in range(100)],
                )
        # Still open: the last connection to close would checkpoint what is left.
        checkpointer = WalCheckpointer(str(sqlite_file(url)))
        busy, frames, copied = checkpointer.checkpoint() or (-1, -1, -1)
        checkpointer.close()
    finally:
        await engine.dispose()
    if wal_checkpoints:  # SQLite's own checkpoints kept starting the WAL over
        assert frames < 1000, frames
    else:  # no commit checkpointed: every page is still in the WAL, and now copied back
        assert frames > 1000, frames
        assert (busy, copied) == (0, frames)


async def test_the_servers_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    await _write_pages(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}", wal_checkpoints=False)


async def test_by_default_sqlite_checkpoints_in_its_commits(tmp_path: Path) -> None:
    await _write_pages(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", wal_checkpoints=True)


async def test_no_database_file_yet_is_nothing_to_checkpoint(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(str(tmp_path / "not-yet.db"))
    assert checkpointer.checkpoint() is None
    assert not (tmp_path / "not-yet.db").exists()  # and none was made


async def test_the_server_runs_the_checkpointer_for_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'qaas.db'}"
    # Retry mode, with no cluster to reach: the lifespan starts at once, the database comes up.
    app = create_app(load_settings(
        database_url=url, startup_retry=True, cluster="kubeconfig",
        kubeconfig=str(tmp_path / "no-kubeconfig"),
    ))  # fmt: skip
    async with app.router.lifespan_context(app):
        checkpointer: WalCheckpointer = app.state.checkpointer
        assert checkpointer.path == str(tmp_path / "qaas.db")
        await eventually(lambda: _done(checkpointer), within=BOUND)
    assert checkpointer._connection is None  # closed with the server


async def _done(checkpointer: WalCheckpointer) -> bool:
    return checkpointer.checkpoints > 0
