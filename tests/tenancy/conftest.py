"""Two tenants and every kind of credential, for the access matrix."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.config import Settings
from app.domain.enums import Role
from app.services.tenancy import create_token, hash_secret
from app.store.models import ApiToken, utcnow
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient
from tests.live.conftest import live  # noqa: F401 - the live server fixture, shared here


@dataclass
class World:
    """Tenant A's objects (made through the API), and tokens of every kind."""

    network_id: str
    node_id: str  # a peer
    coordinator_id: str
    operation_id: str
    token_id: str  # one of A's tokens, as a global ID
    tokens: dict[str, str | None]  # credential kind -> secret (None: no header at all)
    other_tenant: str
    other_namespace: str


async def _token(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, tenant: str, role: Role
) -> str:
    _, _, secret = await create_token(sessions, tenant, role, settings, f"{role.value} token")
    return secret


@pytest.fixture
async def world(
    api: GraphQLClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: CallerTenant,
    kube_api: client.ApiClient,
) -> AsyncIterator[World]:
    created = await api.data(
        'mutation { networkCreate(input: {name: "alpha"}) { network { id '
        "nodes { edges { node { id } } } } operation { id } } }"
    )
    network = created["networkCreate"]["network"]
    added = await api.data(
        'mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: "p1"}) { node { id } } }',
        id=network["id"],
    )
    listed = await api.data("{ tokens { edges { node { id } } } }")
    other = f"beta-{uuid.uuid4().hex[:6]}"
    expired = await _token(sessions, settings, tenant.name, Role.ADMIN)
    revoked = await _token(sessions, settings, tenant.name, Role.ADMIN)
    async with sessions.begin() as session:
        past = utcnow() - datetime.timedelta(seconds=1)
        await session.execute(
            update(ApiToken)
            .where(ApiToken.secret_hash == hash_secret(expired))
            .values(expires_at=past)
        )
        await session.execute(
            update(ApiToken)
            .where(ApiToken.secret_hash == hash_secret(revoked))
            .values(revoked_at=past)
        )
    tokens: dict[str, str | None] = {
        "none": None,
        "bad": "qaas_not-a-real-token",
        "expired": expired,
        "revoked": revoked,
        "other-tenant": await _token(sessions, settings, other, Role.ADMIN),
        "viewer": await _token(sessions, settings, tenant.name, Role.VIEWER),
        "member": await _token(sessions, settings, tenant.name, Role.MEMBER),
        "admin": tenant.token,
    }
    yield World(
        network_id=network["id"],
        node_id=added["nodeAdd"]["node"]["id"],
        coordinator_id=network["nodes"]["edges"][0]["node"]["id"],
        operation_id=created["networkCreate"]["operation"]["id"],
        token_id=listed["tokens"]["edges"][0]["node"]["id"],
        tokens=tokens,
        other_tenant=other,
        other_namespace=f"{settings.tenant_namespace_prefix}{other}",
    )
    try:
        await client.CoreV1Api(kube_api).delete_namespace(
            f"{settings.tenant_namespace_prefix}{other}"
        )
    except client.ApiException as error:
        if error.status != 404:
            raise


def as_caller(app: Starlette, secret: str | None) -> GraphQLClient:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qaas.test", headers=headers
    )
    return GraphQLClient(http)


def error_code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0].get("extensions", {}).get("code") if errors else None
