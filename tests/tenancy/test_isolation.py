"""Tenants in the cluster: own namespaces, same names allowed, limits, quotas, rate limits."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.config import Settings
from app.domain.enums import Role
from app.services.tenancy import create_token
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient, eventually
from tests.tenancy.conftest import as_caller

CREATE = (
    "mutation($n: String!) { networkCreate(input: {name: $n}) "
    "{ network { id } userErrors { code message } } }"
)
ADD = (
    "mutation($id: ID!, $n: String!) { nodeAdd(input: {networkId: $id, name: $n}) "
    "{ userErrors { code message } } }"
)


async def test_two_tenants_run_networks_of_the_same_name_in_their_own_namespaces(
    app: Starlette,
    api: GraphQLClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: CallerTenant,
    kube_api: client.ApiClient,
) -> None:
    other, _, secret = await create_token(sessions, "gamma", Role.MEMBER, settings)
    assert other.namespace == f"{settings.tenant_namespace_prefix}gamma" != tenant.namespace
    gamma = as_caller(app, secret)
    try:
        async with gamma.http:
            for caller in (api, gamma):
                payload = (await caller.data(CREATE, n="shared"))["networkCreate"]
                assert payload["userErrors"] == []
            core = client.CoreV1Api(kube_api)

            async def running_in(namespace: str) -> bool:
                pods = await core.list_namespaced_pod(
                    namespace, label_selector="app.kubernetes.io/instance=shared-coordinator"
                )
                return any(p.status.phase == "Running" for p in pods.items)

            assert await eventually(lambda: running_in(tenant.namespace), within=20)
            assert await eventually(lambda: running_in(other.namespace), within=20)
            namespace = await core.read_namespace(other.namespace)
            assert namespace.metadata.labels["qaas.dev/tenant"] == "gamma"
            quota = await core.read_namespaced_resource_quota("qaas-tenant", other.namespace)
            assert quota.spec.hard["services"] == str(settings.tenant_max_nodes)
    finally:
        await client.CoreV1Api(kube_api).delete_namespace(other.namespace)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "tenant_max_networks": 2,
            "tenant_max_nodes": 3,
            "mutation_burst": 5,
            "mutations_per_minute": 1.0,
        }
    )


async def test_tenant_limits_are_clear_user_errors(api: GraphQLClient) -> None:
    first = (await api.data(CREATE, n="one"))["networkCreate"]
    await api.data(CREATE, n="two")
    third = (await api.data(CREATE, n="three"))["networkCreate"]
    assert third["userErrors"][0]["code"] == "LIMIT_EXCEEDED"
    assert "at most 2 networks" in third["userErrors"][0]["message"]
    added = await api.data(ADD, id=first["network"]["id"], n="p1")  # the 3rd node of 3
    assert added["nodeAdd"]["userErrors"] == []
    refused = await api.data(ADD, id=first["network"]["id"], n="p2")
    assert refused["nodeAdd"]["userErrors"][0]["code"] == "LIMIT_EXCEEDED"


async def test_mutations_are_rate_limited_per_token(api: GraphQLClient) -> None:
    bodies: list[dict[str, Any]] = []
    for i in range(7):
        bodies.append(await api.execute(CREATE, n=f"r{i}"))
    codes = [(b.get("errors") or [{}])[0].get("extensions", {}).get("code") for b in bodies]
    assert codes[:5] == [None] * 5  # the burst
    assert codes[5:] == ["RATE_LIMITED", "RATE_LIMITED"]
    assert bodies[5]["errors"][0]["extensions"]["retryAfterSeconds"] >= 1
    # Reads are not limited.
    assert "errors" not in await api.execute("{ networks { totalCount } }")
