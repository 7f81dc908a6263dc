"""Migrations build the schema the models describe, and carry existing data forward."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from app.store.engine import make_engine
from app.store.migrate import HEAD, alembic_config, upgrade
from app.store.models import Base
from tests.conftest import DATABASES, empty_database


def test_head_is_the_newest_migration() -> None:
    """Start-up compares the database's revision with ``HEAD`` instead of loading Alembic's
    scripts: a new migration must bump it."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_heads() == [HEAD], "set app.store.migrate.HEAD to the new migration"


@pytest.mark.parametrize("kind", DATABASES)
async def test_head_matches_the_models(kind: str, tmp_path: Path) -> None:
    async with empty_database(kind, tmp_path) as url:
        await upgrade(url)
        engine = make_engine(url)

        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("kind", DATABASES)
async def test_no_index_repeats_the_leading_columns_of_another(kind: str, tmp_path: Path) -> None:
    """An index whose columns begin another index (or a unique constraint's, or the primary
    key) serves no lookup the longer one does not, and costs every write to its table."""
    async with empty_database(kind, tmp_path) as url:
        await upgrade(url)
        engine = make_engine(url)

        def indexes(connection: Connection) -> dict[str, dict[str, tuple[str, ...]]]:
            found: dict[str, dict[str, tuple[str, ...]]] = {}
            schema = inspect(connection)
            for table in schema.get_table_names():
                mine = found.setdefault(table, {})
                mine["primary key"] = tuple(schema.get_pk_constraint(table)["constrained_columns"])
                for unique in schema.get_unique_constraints(table):
                    mine[str(unique["name"])] = tuple(unique["column_names"])
                for index in schema.get_indexes(table):
                    mine[str(index["name"])] = tuple(str(c) for c in index["column_names"])
            return found

        async with engine.connect() as connection:
            tables = await connection.run_sync(indexes)
        await engine.dispose()
    assert tables["nodes"]["uq_nodes_network_id_name"] == ("network_id", "name")  # read at all
    redundant = [
        f"{table}.{name} {columns} begins {table}.{other} {longer}"
        for table, found in tables.items()
        for name, columns in found.items()
        if name != "primary key"
        for other, longer in found.items()
        if other != name and len(longer) > len(columns) and longer[: len(columns)] == columns
    ]
    assert redundant == []


async def _insert_rows_of_revision_0001(url: str) -> None:
    """A database at 0001 (before tenants) holding a network and an operation."""
    await upgrade(url, "0001")
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(
            "INSERT INTO networks (id, name, consensus, desired, created_at, updated_at) "
            "VALUES ('n1', 'acme', 'RAFT', 'PRESENT', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))  # fmt: skip
        await connection.execute(text(
            "INSERT INTO operations (id, kind, state, network_id, created_at, updated_at) "
            "VALUES ('o1', 'NETWORK_CREATE', 'PENDING', 'n1', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))  # fmt: skip
    await engine.dispose()


@pytest.mark.parametrize("kind", DATABASES)
async def test_existing_networks_are_given_to_a_local_tenant(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QAAS_NAMESPACE", raising=False)  # unset: the fallback, "default"
    async with empty_database(kind, tmp_path) as url:
        await _insert_rows_of_revision_0001(url)
        await upgrade(url)
        engine = make_engine(url)
        async with engine.connect() as connection:
            tenant = (
                await connection.execute(text("SELECT id, name, namespace FROM tenants"))
            ).one()
            owners = await connection.execute(
                text("SELECT tenant_id FROM networks UNION ALL SELECT tenant_id FROM operations")
            )
            assert {row[0] for row in owners} == {tenant[0]}
        await engine.dispose()
    assert tuple(tenant[1:]) == ("local", "default")


@pytest.mark.parametrize("kind", DATABASES)
async def test_the_local_tenant_gets_the_configured_namespace(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adopted rows' nodes live in QAAS_NAMESPACE: their tenant must say so, as the first
    tenant created by the service would (app.services.tenancy.namespace_for)."""
    async with empty_database(kind, tmp_path) as url:
        await _insert_rows_of_revision_0001(url)
        monkeypatch.setenv("QAAS_NAMESPACE", "qaas-prod")
        await upgrade(url)
        engine = make_engine(url)
        async with engine.connect() as connection:
            tenants = (await connection.execute(text("SELECT name, namespace FROM tenants"))).all()
        await engine.dispose()
    assert [tuple(row) for row in tenants] == [("local", "qaas-prod")]
