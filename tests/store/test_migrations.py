"""Migrations build the schema the models describe, and carry existing data forward."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.store.engine import make_engine
from app.store.migrate import upgrade
from app.store.models import Base
from tests.conftest import DATABASES, empty_database


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
async def test_existing_networks_are_given_to_a_local_tenant(kind: str, tmp_path: Path) -> None:
    async with empty_database(kind, tmp_path) as url:
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
        await upgrade(url)
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
