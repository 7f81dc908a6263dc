"""An administrator's tenant chores, behind `qaas tenant create|list|update|delete`.

The database is the truth about tenants; the cluster side (namespace, RoleBinding, quota,
NetworkPolicy) is ``app.control.namespaces.provision``, run here with the administrator's
cluster credentials. Deleting a tenant deletes its rows first: a running reconciler then no
longer sees the tenant, stops watching its namespace, and the namespace is deleted last.

Example::

    tenant = await create_tenant(session, "acme", settings, max_networks=5)
    await provision(admin_cluster, tenant, settings)
    rows = await tenant_rows(session)       # [TenantRow(name=..., networks=..., ...)]
    tenant = await delete_tenant(session, "acme", force=True)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain.names import tidy
from app.events.pg_bus import PostgresBus
from app.services.tenancy import TenancyError, ensure_tenant
from app.store import desired, tenants
from app.store.models import Tenant
from app.store.node_feed import announce_if_shared


@dataclass(frozen=True)
class TenantRow:
    """One line of `qaas tenant list`."""

    name: str
    namespace: str
    max_networks: int
    max_nodes: int
    networks: int
    nodes: int
    tokens: int  # active: neither revoked nor expired


def _limit_problem(name: str, value: int | None) -> str | None:
    if value is not None and not 1 <= value <= 100_000:
        return f"--{name} must be 1 to 100000"
    return None


def _check_limits(max_networks: int | None, max_nodes: int | None) -> None:
    problems = [
        problem
        for problem in (
            _limit_problem("max-networks", max_networks),
            _limit_problem("max-nodes", max_nodes),
        )
        if problem
    ]
    if problems:
        raise TenancyError("; ".join(problems))


async def create_tenant(
    session: AsyncSession,
    name: str,
    settings: Settings,
    *,
    max_networks: int | None = None,
    max_nodes: int | None = None,
) -> tuple[Tenant, bool]:
    """The tenant ``name`` (made with these limits, else the settings' defaults) and whether
    it is new. An existing tenant is returned as it is: limits change with ``update_limits``."""
    _check_limits(max_networks, max_nodes)
    existing = await tenants.tenant_named(session, tidy(name))
    if existing is not None:
        return existing, False
    tenant = await ensure_tenant(session, name, settings)
    tenant.max_networks = max_networks or tenant.max_networks
    tenant.max_nodes = max_nodes or tenant.max_nodes
    return tenant, True


async def _named(session: AsyncSession, name: str) -> Tenant:
    tenant = await tenants.tenant_named(session, tidy(name))
    if tenant is None:
        raise TenancyError(f'no tenant named "{tidy(name)}" (see `qaas tenant list`)')
    return tenant


async def update_limits(
    session: AsyncSession, name: str, *, max_networks: int | None, max_nodes: int | None
) -> Tenant:
    """Change the tenant's limits. A limit below what the tenant has now is refused: the
    quota would stop its existing nodes' pods from being replaced."""
    _check_limits(max_networks, max_nodes)
    if max_networks is None and max_nodes is None:
        raise TenancyError("nothing to change: give --max-networks and/or --max-nodes")
    tenant = await _named(session, name)
    locked = await tenants.lock_tenant(session, tenant.id)
    assert locked is not None
    networks, nodes = await desired.tenant_counts(session, tenant.id)
    if max_networks is not None and max_networks < networks:
        raise TenancyError(f"tenant {tenant.name} has {networks} networks: --max-networks "
                           f"must be at least that")  # fmt: skip
    if max_nodes is not None and max_nodes < nodes:
        raise TenancyError(
            f"tenant {tenant.name} has {nodes} nodes: --max-nodes must be at least that"
        )
    locked.max_networks = max_networks or locked.max_networks
    locked.max_nodes = max_nodes or locked.max_nodes
    return locked


async def tenant_rows(session: AsyncSession) -> list[TenantRow]:
    usage = await tenants.usage_by_tenant(session)
    rows = []
    for tenant in await tenants.all_tenants(session):
        networks, nodes, tokens = usage.get(tenant.id, (0, 0, 0))
        rows.append(TenantRow(tenant.name, tenant.namespace, tenant.max_networks,
                              tenant.max_nodes, networks, nodes, tokens))  # fmt: skip
    return rows


async def delete_tenant(
    session: AsyncSession, name: str, *, force: bool, keep_namespace: str
) -> Tenant:
    """Delete the tenant's rows (tokens, networks, nodes, operations, the tenant); refused
    while it has networks unless ``force``. Returns the deleted tenant: its namespace is the
    caller's to delete, unless it is ``keep_namespace`` (QaaS's own, shared with the first
    tenant), where ``force`` cannot help: its networks must be deleted through the API."""
    tenant = await _named(session, name)
    networks, nodes = await desired.tenant_counts(session, tenant.id)
    if networks and tenant.namespace == keep_namespace:
        raise TenancyError(
            f"tenant {tenant.name} has {networks} network(s) in QaaS's own namespace "
            f"{keep_namespace}, which is never deleted: delete its networks first"
        )
    if networks and not force:
        raise TenancyError(
            f"tenant {tenant.name} has {networks} network(s) with {nodes} node(s): delete "
            f"them first, or pass --force to delete them with the tenant and its namespace"
        )
    for token_id in await tenants.token_ids_of(session, tenant.id):
        note = PostgresBus.token_ended(token_id, deleted=True)
        await announce_if_shared(session, *note)  # sent on commit
    await tenants.delete_tenant(session, tenant.id)
    return tenant
