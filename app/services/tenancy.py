"""Tenants, API tokens and who a request is.

A token is ``qaas_`` followed by 43 random URL-safe characters (256 bits). It is shown once, when
created; the database keeps only its SHA-256 (a fast hash is right for a high-entropy secret:
there is nothing to brute-force) and a short hint to tell tokens apart. A token belongs to one
tenant and has one role: ADMIN (everything, tokens included), MEMBER (networks and nodes),
VIEWER (read only). Expired and revoked tokens authenticate no one.

Example::

    tenant, token, secret = await create_token(sessions, "acme", Role.ADMIN, settings)
    principal = await authenticate(sessions, secret)     # Principal(tenant_id=..., role=ADMIN)
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.enums import Role
from app.domain.errors import ErrorCode, UserError
from app.domain.names import tenant_name_problem, tenant_namespace, tidy
from app.events.pg_bus import PostgresBus
from app.store import tenants
from app.store.models import ApiToken, Tenant, utcnow
from app.store.node_feed import announce_if_shared
from app.store.unit import write_session

TOKEN_PREFIX = "qaas_"


class TenancyError(ValueError):
    """A tenant or token request that cannot be done; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token of a tenant, with a role."""

    tenant_id: str
    tenant_name: str
    namespace: str
    role: Role
    token_id: str
    expires_at: datetime.datetime | None = None  # the token's


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def namespace_for(tenant: str, settings: Settings, first: bool) -> str:
    """The first tenant of an installation uses the configured namespace (a single-tenant
    installation keeps working as before); every other one gets ``<prefix><tenant>``."""
    if first:
        return settings.namespace or "default"
    return tenant_namespace(tenant, settings.tenant_namespace_prefix)


async def ensure_tenant(session: AsyncSession, name: str, settings: Settings) -> Tenant:
    name = tidy(name)
    tenant = await tenants.tenant_named(session, name)
    if tenant is not None:
        return tenant
    problem = tenant_name_problem(name, settings.tenant_namespace_prefix)
    if problem:
        raise TenancyError(f'tenant name "{name}" {problem}')
    first = not await tenants.any_tenant(session)
    tenant = Tenant(
        name=name,
        namespace=namespace_for(name, settings, first),
        max_networks=settings.tenant_max_networks,
        max_nodes=settings.tenant_max_nodes,
    )
    await tenants.add(session, tenant)
    return tenant


async def issue_token(
    session: AsyncSession,
    tenant: Tenant,
    role: Role,
    name: str = "token",
    expires_in: datetime.timedelta | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``tenant``; returns the row and the secret (the only time it exists)."""
    secret = new_secret()
    token = ApiToken(
        tenant_id=tenant.id,
        name=name[:100] or "token",
        role=role,
        secret_hash=hash_secret(secret),
        hint=secret[: len(TOKEN_PREFIX) + 4],
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    await tenants.add(session, token)
    return token, secret


MAX_TOKEN_DAYS = 3650


def token_request_errors(name: str, expires_in_days: int | None) -> list[UserError]:
    """What is wrong with a request for a new token's ``name`` and lifetime, if anything."""
    errors = []
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        errors.append(UserError(("input", "expiresInDays"), f"must be 1 to {MAX_TOKEN_DAYS}",
                                ErrorCode.INVALID_INPUT))  # fmt: skip
    if not 1 <= len(tidy(name)) <= 100:
        errors.append(UserError(("input", "name"), "must be 1 to 100 characters",
                                ErrorCode.INVALID_INPUT))  # fmt: skip
    return errors


async def token_for_tenant(
    session: AsyncSession, tenant_id: str, role: Role, name: str, expires_in_days: int | None
) -> tuple[ApiToken, str]:
    """A new token of an existing tenant (``tokenCreate``); validate with token_request_errors."""
    tenant = await tenants.tenant_by_id(session, tenant_id)
    assert tenant is not None  # the caller's own tenant
    expires = datetime.timedelta(days=expires_in_days) if expires_in_days else None
    return await issue_token(session, tenant, role, tidy(name), expires)


async def revoke_token(
    session: AsyncSession, token_id: str, tenant_id: str | None = None
) -> ApiToken | None:
    """Revoke the token (of ``tenant_id``, when given); None if there is no such token."""
    token = await tenants.token_by_id(session, token_id, tenant_id)
    if token is not None:
        token.revoked_at = token.revoked_at or utcnow()
        # Every replica forgets it and ends its WebSockets once this commits.
        await announce_if_shared(session, *PostgresBus.token_ended(token.id))
    return token


async def tokens_of(session: AsyncSession, tenant: str) -> list[tuple[ApiToken, str]]:
    """The tenant's tokens with their state: ``active``, ``expired`` or ``revoked``."""
    now = utcnow()
    return [
        (token, "revoked" if token.revoked_at else
         "expired" if token.expires_at and token.expires_at <= now else "active")
        for token in await tenants.tokens_of_tenant_named(session, tenant)
    ]  # fmt: skip


async def bootstrap_first_tenant(session: AsyncSession, settings: Settings) -> str | None:
    """On an installation with no tenant, make ``local`` and an ADMIN token for it; returns
    the token's secret (None when a tenant exists already)."""
    if await tenants.any_tenant(session):
        return None
    tenant = await ensure_tenant(session, "local", settings)
    _, secret = await issue_token(session, tenant, Role.ADMIN, "bootstrap admin")
    return secret


async def create_token(
    sessions: async_sessionmaker[AsyncSession],
    tenant_name: str,
    role: Role,
    settings: Settings,
    name: str = "token",
    expires_in: datetime.timedelta | None = None,
    *,
    create_tenant: bool = True,
) -> tuple[Tenant, ApiToken, str]:
    """A token for the tenant (the `qaas token create` command), creating the tenant if
    needed; with ``create_tenant=False`` an unknown tenant is a ``TenancyError`` instead."""
    try:
        async with write_session(sessions) as session:
            if not create_tenant and await tenants.tenant_named(session, tidy(tenant_name)) is None:
                raise TenancyError(
                    f'no tenant named "{tidy(tenant_name)}": create it with `qaas tenant create '
                    f"{tidy(tenant_name)}` (an administrator's step), or pass --create-tenant"
                )
            tenant = await ensure_tenant(session, tenant_name, settings)
            token, secret = await issue_token(session, tenant, role, name, expires_in)
    except IntegrityError:
        raise TenancyError(
            f'tenant "{tenant_name}" was just created by someone else; retry'
        ) from None
    return tenant, token, secret


class AuthError(Exception):
    """The request carries no usable token. The message is safe to show the caller."""


async def authenticate(
    sessions: async_sessionmaker[AsyncSession],
    secret: str | None,
    used: Callable[[str], None] | None = None,
) -> Principal:
    """Who ``secret`` is; AuthError if no one. ``used`` is told the token's id on success (to
    record ``last_used_at``: see app/services/token_use.py)."""
    if not secret:
        raise AuthError("authentication required: send `Authorization: Bearer <token>`")
    async with sessions() as session:
        row = await tenants.token_by_hash(session, hash_secret(secret))
        if row is None:
            raise AuthError("invalid token")
        token, tenant = row
        now = utcnow()
        if token.revoked_at is not None:
            raise AuthError("this token was revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthError("this token has expired")
    if used is not None:
        used(token.id)
    return Principal(
        tenant.id, tenant.name, tenant.namespace, token.role, token.id, token.expires_at
    )


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value, if any."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
