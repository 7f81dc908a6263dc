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
from app.store.models import Network, Tenant
from tests.helpers import Writes


async def _at_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str, names: list[str], **limits: int
) -> tuple[Tenant, int, set[ErrorCode]]:
    """A new tenant (with ``limits``) and simultaneous creates of ``names``: how many were
    accepted and the codes of the refusals."""
    settings = load_settings(database_url=database_url, namespace="race", **limits)
    tenant, _, _ = await create_token(sessions, "race", Role.ADMIN, settings)
    writes = Writes(sessions)
    results = await asyncio.gather(
        *(writes.create_network(tenant.id, name, Consensus.RAFT) for name in names)
    )
    refused = {error.code for r in results for error in r.errors}
    return tenant, sum(not r.errors for r in results), refused


async def test_simultaneous_creates_stop_at_the_network_limit(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    names = [f"n{i}" for i in range(8)]
    tenant, accepted, refused = await _at_once(sessions, database_url, names, tenant_max_networks=2)
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Network).where(Network.tenant_id == tenant.id)
        )
    assert (accepted, stored) == (2, 2)
    assert refused == {ErrorCode.LIMIT_EXCEEDED}


async def test_simultaneous_creates_of_one_name_make_one_network(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Only one of them gets the name; on PostgreSQL the others saw it free and are refused by
    the unique constraint at their insert, which must leave nothing of theirs behind."""
    tenant, accepted, refused = await _at_once(sessions, database_url, ["same"] * 6)
    async with sessions() as session:
        counted = await desired.tenant_counts(session, tenant.id)
        kept = await tenants.tenant_by_id(session, tenant.id)
    assert accepted == 1
    assert refused == {ErrorCode.NAME_TAKEN}
    assert kept is not None
    assert counted == (kept.network_count, kept.node_count) == (1, 1)
