"""`qaas serve` imports only what start-up needs: the entry points (`app.server`, the CLI) and
preparing a database that is already at the latest revision import no Alembic (its imports and
loading its scripts cost about half a second) and none of the sandbox (the embedded default's,
with its TLS code). Each check runs in a fresh interpreter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from app.store.migrate import HEAD, current_revision, upgrade

ROOT = Path(__file__).resolve().parents[1]
NOT_AT_START = ("alembic", "app.sandbox.handle", "cryptography")
PROBE = """
import asyncio, sys
import app.cli.parser, app.server
from app.store.migrate import prepare
if sys.argv[1] != "-":
    asyncio.run(prepare(sys.argv[1]))
print(",".join(name for name in sys.argv[2:] if name in sys.modules))
"""


async def imported(url: str = "-") -> list[str]:
    """Which of ``NOT_AT_START`` a fresh interpreter imported: the entry points, then (given
    ``url``) preparing that database as start-up does."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", PROBE, url, *NOT_AT_START],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


async def test_the_entry_points_import_no_alembic_and_no_sandbox() -> None:
    assert await imported() == []


async def test_preparing_a_current_database_imports_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'qaas.db'}"
    await upgrade(url)
    assert await imported(url) == []


@pytest.mark.parametrize("revision", [None, "0005"])
async def test_a_database_behind_is_still_migrated(tmp_path: Path, revision: str | None) -> None:
    """Alembic is imported when it is needed: a fresh database, or one a revision behind."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'qaas.db'}"
    if revision is not None:
        await upgrade(url, revision)
    assert await imported(url) == ["alembic"]
    assert await current_revision(url) == HEAD
