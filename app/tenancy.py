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
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.models import ApiToken, Tenant, utcnow
from app.domain.enums import Role
from app.domain.names import name_problem

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


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def namespace_for(tenant: str, settings: Settings, first: bool) -> str:
    """The first tenant of an installation uses the configured namespace (a single-tenant
    installation keeps working as before); every other one gets ``<prefix><tenant>``."""
    if first:
        return settings.namespace or "default"
    return f"{settings.tenant_namespace_prefix}{tenant}"[:63].rstrip("-")


async def ensure_tenant(session: AsyncSession, name: str, settings: Settings) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is not None:
        return tenant
    problem = name_problem(name, 63 - len(settings.tenant_namespace_prefix))
    if problem:
        raise TenancyError(f'tenant name "{name}" {problem}')
    first = await session.scalar(select(Tenant.id).limit(1)) is None
    tenant = Tenant(
        name=name,
        namespace=namespace_for(name, settings, first),
        max_networks=settings.tenant_max_networks,
        max_nodes=settings.tenant_max_nodes,
    )
    session.add(tenant)
    await session.flush()
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
    session.add(token)
    await session.flush()
    return token, secret


async def create_token(
    sessions: async_sessionmaker[AsyncSession],
    tenant_name: str,
    role: Role,
    settings: Settings,
    name: str = "token",
    expires_in: datetime.timedelta | None = None,
) -> tuple[Tenant, ApiToken, str]:
    """Create the tenant if needed and a token for it (the `qaas token create` command)."""
    try:
        async with sessions.begin() as session:
            tenant = await ensure_tenant(session, tenant_name, settings)
            token, secret = await issue_token(session, tenant, role, name, expires_in)
    except IntegrityError:
        raise TenancyError(
            f'tenant "{tenant_name}" was just created by someone else; retry'
        ) from None
    return tenant, token, secret


class AuthError(Exception):
    """The request carries no usable token. The message is safe to show the caller."""


async def authenticate(sessions: async_sessionmaker[AsyncSession], secret: str | None) -> Principal:
    if not secret:
        raise AuthError("authentication required: send `Authorization: Bearer <token>`")
    async with sessions() as session:
        row = (
            await session.execute(
                select(ApiToken, Tenant)
                .join(Tenant, ApiToken.tenant_id == Tenant.id)
                .where(ApiToken.secret_hash == hash_secret(secret))
            )
        ).first()
        if row is None:
            raise AuthError("invalid token")
        token, tenant = row
        now = utcnow()
        if token.revoked_at is not None:
            raise AuthError("this token was revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthError("this token has expired")
        return Principal(tenant.id, tenant.name, tenant.namespace, token.role, token.id)


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value, if any."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
