"""Apply Alembic migrations from code: `qaas migrate`, the embedded default's start-up, tests.

Each entry point first connects once (``reach``), so a database that cannot be used is one
sentence (``DatabaseUnavailable``), not a driver's traceback.

Example::

    await upgrade("sqlite+aiosqlite:///./qaas.db")
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.store.engine import make_engine, reach, safe_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MIGRATION_LOCK = 0x9AA5  # an arbitrary, fixed advisory-lock key for QaaS migrations


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call when it is already there."""
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


async def ensure_current(url: str) -> None:
    """Fail with one clear sentence unless the database is at the latest revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    await reach(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
    if current != head:
        raise MigrationNeeded(
            f"the database at {safe_url(url)} is at revision {current or 'none'} but this QaaS "
            f"needs {head}: run `qaas migrate` first"
        )


async def prepare(url: str) -> None:
    """Make the database usable: the embedded SQLite default migrates itself; PostgreSQL, shared
    by replicas, must have been migrated by `qaas migrate` (one clear error otherwise)."""
    if url.startswith("sqlite"):
        await upgrade(url)
    else:
        await ensure_current(url)
