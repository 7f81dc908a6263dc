"""Tenants and API tokens: the rows behind authentication, `qaas token` and `qaas tenant`.

Example::

    tenant = await tenant_named(session, "acme")
    found = await token_by_hash(session, hash_secret(secret))   # (ApiToken, Tenant) or None
"""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import ApiToken, Network, Node, Operation, Tenant, utcnow


async def all_tenants(session: AsyncSession) -> list[Tenant]:
    return list(await session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id)))


async def tenant_by_id(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def lock_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    """The tenant, locked until the transaction ends, for a change of its limits: a mutation
    counting its new rows in (``desired.claim``) waits for it, so a limit cannot be lowered
    below what a concurrent mutation adds.

    On PostgreSQL ``SELECT ... FOR NO KEY UPDATE`` locks the row (inserting the tenant's
    networks and tokens elsewhere is not held up); SQLite has no row locks and needs none
    here: call this in a unit of work (``app/store/unit.py``), whose ``BEGIN IMMEDIATE``
    already holds SQLite's write lock for the whole database.
    """
    query = (
        select(Tenant)
        .where(Tenant.id == tenant_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(query)


async def tenant_named(session: AsyncSession, name: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(Tenant.name == name))


async def any_tenant(session: AsyncSession) -> bool:
    return await session.scalar(select(Tenant.id).limit(1)) is not None


async def add(session: AsyncSession, row: Tenant | ApiToken) -> None:
    """Insert ``row`` now (flush), so a unique-name race surfaces here as IntegrityError."""
    session.add(row)
    await session.flush()


async def token_by_hash(session: AsyncSession, secret_hash: str) -> tuple[ApiToken, Tenant] | None:
    row = (
        await session.execute(
            select(ApiToken, Tenant)
            .join(Tenant, ApiToken.tenant_id == Tenant.id)
            .where(ApiToken.secret_hash == secret_hash)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def token_by_id(
    session: AsyncSession, token_id: str, tenant_id: str | None = None
) -> ApiToken | None:
    """The token with this id; with ``tenant_id``, only if it is that tenant's."""
    query = select(ApiToken).where(ApiToken.id == token_id)
    if tenant_id is not None:
        query = query.where(ApiToken.tenant_id == tenant_id)
    return await session.scalar(query)


async def token_ids_of(session: AsyncSession, tenant_id: str) -> list[str]:
    return list(await session.scalars(select(ApiToken.id).where(ApiToken.tenant_id == tenant_id)))


async def tokens_of_tenant_named(session: AsyncSession, tenant: str) -> list[ApiToken]:
    return list(
        await session.scalars(
            select(ApiToken).join(Tenant).where(Tenant.name == tenant).order_by(ApiToken.created_at)
        )
    )


async def usage_by_tenant(session: AsyncSession) -> dict[str, tuple[int, int, int]]:
    """Per tenant id: its networks, its nodes and its active tokens (neither revoked nor
    expired), for `qaas tenant list`."""
    now = utcnow()
    queries = (
        select(Network.tenant_id, func.count()).group_by(Network.tenant_id),
        select(Network.tenant_id, func.count(Node.id))
        .join(Node, Node.network_id == Network.id)
        .group_by(Network.tenant_id),
        select(ApiToken.tenant_id, func.count())
        .where(ApiToken.revoked_at.is_(None))
        .where(or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
        .group_by(ApiToken.tenant_id),
    )
    found: list[dict[str, int]] = []
    for query in queries:
        found.append({tenant_id: count for tenant_id, count in await session.execute(query)})
    networks, nodes, tokens = found
    return {
        tenant_id: (networks.get(tenant_id, 0), nodes.get(tenant_id, 0), tokens.get(tenant_id, 0))
        for tenant_id in set(networks) | set(nodes) | set(tokens)
    }


async def delete_tenant(session: AsyncSession, tenant_id: str) -> None:
    """Delete the tenant's rows: its nodes (their status history goes with them, by foreign
    key), its networks, operations, tokens and the tenant itself.

    Nodes first, then networks, then operations: the control loop's transactions lock a node's
    row and then its network's (a node written twice in one transaction has its foreign key
    checked again, which share-locks the network) and its operations' (a node deleted, its
    operation finished). Deleting the networks first, with their nodes by cascade, took the
    network's row before the node's and deadlocked with the node writer (seen on PostgreSQL:
    ``UPDATE nodes ... revision`` against ``DELETE FROM networks``)."""
    mine = select(Network.id).where(Network.tenant_id == tenant_id).scalar_subquery()
    await session.execute(delete(Node).where(Node.network_id.in_(mine)))
    await session.execute(delete(Network).where(Network.tenant_id == tenant_id))
    await session.execute(delete(Operation).where(Operation.tenant_id == tenant_id))
    await session.execute(delete(ApiToken).where(ApiToken.tenant_id == tenant_id))
    await session.execute(delete(Tenant).where(Tenant.id == tenant_id))
