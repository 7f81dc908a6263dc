"""Tenant limits hold under concurrent requests: the count and the insert happen under a lock on
the tenant, so simultaneous mutations cannot all see room for one more. On both databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.domain.enums import Consensus, Role
from app.domain.errors import ErrorCode
from app.services.tenancy import create_token
from app.store import desired, tenants
from app.store.models import Network
from tests.helpers import Writes


async def test_simultaneous_creates_stop_at_the_network_limit(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = load_settings(database_url=database_url, namespace="limits", tenant_max_networks=2)
    tenant, _, _ = await create_token(sessions, "limits", Role.ADMIN, settings)
    writes = Writes(sessions)

    results = await asyncio.gather(
        *(writes.create_network(tenant.id, f"n{i}", Consensus.RAFT) for i in range(8))
    )

    accepted = [r for r in results if not r.errors]
    refused = {error.code for r in results for error in r.errors}
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Network).where(Network.tenant_id == tenant.id)
        )
    assert (len(accepted), stored) == (2, 2), [r.errors for r in results]
    assert refused == {ErrorCode.LIMIT_EXCEEDED}


async def test_simultaneous_creates_of_one_name_make_one_network(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Only one of them gets the name; on PostgreSQL the others saw it free and are refused by
    the unique constraint at their insert, which must leave nothing of theirs behind."""
    settings = load_settings(database_url=database_url, namespace="names")
    tenant, _, _ = await create_token(sessions, "names", Role.ADMIN, settings)
    writes = Writes(sessions)

    results = await asyncio.gather(
        *(writes.create_network(tenant.id, "same", Consensus.RAFT) for _ in range(6))
    )

    accepted = [r for r in results if not r.errors]
    refused = {error.code for r in results for error in r.errors}
    async with sessions() as session:
        counted = await desired.tenant_counts(session, tenant.id)
        kept = await tenants.tenant_by_id(session, tenant.id)
    assert len(accepted) == 1, [r.errors for r in results]
    assert refused == {ErrorCode.NAME_TAKEN}
    assert kept is not None
    assert counted == (kept.network_count, kept.node_count) == (1, 1)
