"""A tenant's kept counts of networks and nodes (``Tenant.network_count``, ``node_count``), which
a mutation checks the limits against, always equal its rows counted: through creates, joins,
nodes added, nodes and networks deleted, and a migration of a database that has rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.domain.enums import Consensus, Role
from app.domain.errors import ErrorCode
from app.services.tenancy import create_token
from app.store import desired
from app.store.engine import make_engine
from app.store.migrate import upgrade
from app.store.models import Tenant
from app.store.unit import UnitOfWork
from tests.conftest import DATABASES, empty_database
from tests.helpers import Writes


async def _kept_and_counted(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str
) -> tuple[tuple[int, int], tuple[int, int]]:
    async with sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        counted = await desired.tenant_counts(session, tenant_id)
        return (tenant.network_count, tenant.node_count), counted


async def test_kept_counts_follow_every_insert_and_delete(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db", namespace="counts")
    tenant, _, _ = await create_token(sessions, "counts", Role.ADMIN, settings)
    other, _, _ = await create_token(sessions, "other", Role.ADMIN, settings)
    writes = Writes(sessions)
    first = await writes.create_network(tenant.id, "first", Consensus.RAFT)
    second = await writes.create_network(tenant.id, "second", Consensus.RAFT)
    await writes.create_network(other.id, "theirs", Consensus.RAFT)
    assert first.network is not None
    assert second.network is not None
    added = [await writes.add_node(tenant.id, first.network.id, f"peer-{k}") for k in range(3)]
    refused = await writes.create_network(tenant.id, "first", Consensus.RAFT)  # name taken
    assert [e.code for e in refused.errors] == [ErrorCode.NAME_TAKEN]
    assert await _kept_and_counted(sessions, tenant.id) == ((2, 5), (2, 5))

    async with UnitOfWork.begin(sessions) as work:  # what the reconciler's removal does
        node = added[0].node
        assert node is not None
        await desired.delete_node(work.session, node.id)
        await desired.delete_node(work.session, node.id)  # gone already: nothing to count
        for only in await desired.nodes_of(work.session, second.network.id):
            await desired.delete_node(work.session, only.id)
        assert await desired.delete_network_if_empty(work.session, second.network.id)
        assert not await desired.delete_network_if_empty(work.session, first.network.id)
    assert await _kept_and_counted(sessions, tenant.id) == ((1, 3), (1, 3))
    assert await _kept_and_counted(sessions, other.id) == ((1, 1), (1, 1))


async def test_a_refused_mutation_counts_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A mutation counts its rows in before it checks the limits (``desired.claim``); a
    refusal, whatever its reason, takes them back out."""
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db", namespace="counts",
                             tenant_max_networks=2, tenant_max_nodes=3)  # fmt: skip
    tenant, _, _ = await create_token(sessions, "counts", Role.ADMIN, settings)
    writes = Writes(sessions)
    first = await writes.create_network(tenant.id, "first", Consensus.RAFT)
    second = await writes.create_network(tenant.id, "second", Consensus.RAFT)
    assert first.network is not None
    assert second.network is not None
    assert (await writes.delete_network(tenant.id, second.network.id)).errors == []
    refusals = [
        await writes.create_network(tenant.id, "third", Consensus.RAFT),  # 3 networks of 2
        await writes.create_network(tenant.id, "first", Consensus.RAFT),  # the name is taken
        await writes.create_network(tenant.id, "second", Consensus.RAFT),  # being deleted
        await writes.add_node(tenant.id, first.network.id, "coordinator"),  # so is this one
    ]
    third = await writes.add_node(tenant.id, first.network.id, "peer-1")  # the 3rd node of 3
    assert third.errors == []
    refusals.append(await writes.add_node(tenant.id, first.network.id, "peer-2"))  # 4 of 3
    assert [[e.code for e in r.errors] for r in refusals] == [
        [ErrorCode.LIMIT_EXCEEDED], [ErrorCode.NAME_TAKEN], [ErrorCode.BEING_DELETED],
        [ErrorCode.NAME_TAKEN], [ErrorCode.LIMIT_EXCEEDED],
    ]  # fmt: skip
    assert await _kept_and_counted(sessions, tenant.id) == ((2, 3), (2, 3))


@pytest.mark.parametrize("kind", DATABASES)
async def test_the_migration_counts_what_tenants_have(kind: str, tmp_path: Path) -> None:
    async with empty_database(kind, tmp_path) as url:
        await upgrade(url, "0006")
        engine = make_engine(url)
        async with engine.begin() as connection:
            for tenant in ("t1", "t2"):
                await connection.execute(text(
                    "INSERT INTO tenants (id, name, namespace, max_networks, max_nodes, "
                    "created_at) VALUES (:t, :t, :t, 10, 50, CURRENT_TIMESTAMP)"
                ), {"t": tenant})  # fmt: skip
            for network, tenant, nodes in (("n1", "t1", 2), ("n2", "t1", 1), ("n3", "t2", 0)):
                await connection.execute(text(
                    "INSERT INTO networks (id, tenant_id, name, consensus, desired, created_at, "
                    "updated_at, storage_size, storage_class) VALUES (:n, :t, :n, 'RAFT', "
                    "'PRESENT', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '1Gi', '')"
                ), {"n": network, "t": tenant})  # fmt: skip
                for k in range(nodes):
                    await connection.execute(text(
                        "INSERT INTO nodes (id, network_id, name, role, desired, created_at, "
                        "updated_at, has_service, has_deployment, pod_ready, restart_count, "
                        "status, chain_stalled, revision, status_changed_at) VALUES (:id, :n, "
                        ":id, 'PEER', 'PRESENT', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false, "
                        "false, false, 0, 'PENDING', false, 1, CURRENT_TIMESTAMP)"
                    ), {"id": f"{network}-{k}", "n": network})  # fmt: skip
        await engine.dispose()
        await upgrade(url)
        engine = make_engine(url)
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(Tenant.id, Tenant.network_count, Tenant.node_count).order_by(Tenant.id)
            )
            counts = [tuple(row) for row in rows]
        await engine.dispose()
    assert counts == [("t1", 2, 3), ("t2", 1, 0)]
