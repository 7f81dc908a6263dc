"""Apply Alembic migrations from code: `qaas migrate`, the embedded default's start-up, tests.

Each entry point first connects once (``reach``), so a database that cannot be used is one
sentence (``DatabaseUnavailable``), not a driver's traceback.

Start-up (``prepare``) reads the database's revision with one query and compares it with
``HEAD``; only a database that is not there imports Alembic (a third of a second of imports,
and more to load the scripts) to migrate or to say what it needs.

Example::

    await upgrade("sqlite+aiosqlite:///./qaas.db")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from app.store.engine import make_engine, reach, safe_url

if TYPE_CHECKING:  # Alembic is imported where it is used: start-up rarely needs it
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MIGRATION_LOCK = 0x9AA5  # an arbitrary, fixed advisory-lock key for QaaS migrations
# The newest revision in migrations/versions: bump it with each new migration
# (tests/store/test_migrations.py checks it against Alembic's head).
HEAD = "0008"
VERSION_TABLE = "alembic_version"  # Alembic's default, where it records the revision


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # lazily: see the module

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call when it is already there."""
    from alembic import command  # lazily: see the module

    await reach(url)
    config = alembic_config(url)
    engine = make_engine(url)

    def _run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Several pods may start `qaas migrate` at once: one migrates, the others wait and
            # then find nothing to do. The lock ends with the transaction.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


class MigrationNeeded(RuntimeError):
    """The database is not at the revision this code needs."""


async def current_revision(url: str) -> str | None:
    """The database's revision, as Alembic recorded it (None: not migrated; raises
    ``DatabaseUnavailable`` if it cannot be reached). More than one (branches) is a mismatch:
    the revisions joined with commas."""

    def _read(connection: Connection) -> str | None:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        return ",".join(sorted(rows)) or None

    await reach(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_read)
    finally:
        await engine.dispose()


async def ensure_current(url: str) -> None:
    """Fail with one clear sentence unless the database is at the latest revision."""
    current = await current_revision(url)
    if current != HEAD:
        raise MigrationNeeded(
            f"the database at {safe_url(url)} is at revision {current or 'none'} but this QaaS "
            f"needs {HEAD}: run `qaas migrate` first"
        )


async def prepare(url: str) -> None:
    """Make the database usable: the embedded SQLite default migrates itself; PostgreSQL, shared
    by replicas, must have been migrated by `qaas migrate` (one clear error otherwise)."""
    if not url.startswith("sqlite"):
        await ensure_current(url)
    elif await current_revision(url) != HEAD:
        await upgrade(url)
