"""Shared fixtures: one sandbox cluster for the whole run, a fresh namespace per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes_asyncio import client, config
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.applications import Starlette

from app.config import Settings, load_settings
from app.domain.enums import Role
from app.sandbox.handle import Sandbox, SandboxState
from app.server import create_app
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from app.store.models import Base
from tests.helpers import GraphQLClient, eventually


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxState]:
    """A sandbox of our own for this test run, tied to pytest: it dies with the run.

    Its pods are simulated unless they or their namespace ask for processes (the suite runs
    hundreds of QNM pods; the tests of real processes label their namespace, see
    ``process_namespace``)."""
    handle = Sandbox(tmp_path_factory.mktemp("sandbox"))
    state = handle.up(
        progress=lambda line: print(line, flush=True), detach=False, runtime="simulated"
    )
    yield state
    handle.down()


@pytest.fixture(scope="session")
def kubeconfig(sandbox: SandboxState) -> Path:
    return sandbox.kubeconfig


@pytest.fixture(scope="session")
async def kube_api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace({"metadata": {"name": name, "labels": {"qaas.dev/test": "true"}}})

    async def default_service_account() -> bool:
        # Pods are refused in a namespace until the controllers have created its default
        # ServiceAccount and that account's token (Kubernetes 1.20).
        accounts = await core.list_namespaced_service_account(name)
        return any(sa.metadata.name == "default" and sa.secrets for sa in accounts.items)

    await eventually(default_service_account)
    yield name
    await core.delete_namespace(name)


# -- databases ------------------------------------------------------------------------------

POSTGRES_ADMIN_URL = os.environ.get(
    "QAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# The suite runs its database tests on both backends. Narrow it on purpose with
# QAAS_TEST_DATABASES=sqlite; an unreachable PostgreSQL fails the run instead of skipping.
DATABASES = os.environ.get("QAAS_TEST_DATABASES", "sqlite,postgresql").split(",")


@contextlib.asynccontextmanager
async def empty_database(
    kind: str, folder: Path, admin_url: str = POSTGRES_ADMIN_URL
) -> AsyncIterator[str]:
    """A new, empty database of ``kind`` ("sqlite" or "postgresql", made on the server of
    ``admin_url``); dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / f'qaas-{uuid.uuid4().hex[:8]}.db'}"
        return
    admin = make_url(admin_url)
    name = f"qaas_test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()


@pytest.fixture(scope="session", params=DATABASES)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh database built by the project's own migrations, for the whole session."""
    async with empty_database(request.param, tmp_path_factory.mktemp("db")) as url:
        await upgrade(url)
        yield url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database, emptied before each test."""
    engine = make_engine(database_url)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    yield make_sessionmaker(engine)
    await engine.dispose()


# -- the service ----------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, kubeconfig: Path, namespace: str) -> Settings:
    return load_settings(
        database_url=database_url,
        kubeconfig=str(kubeconfig),
        cluster="kubeconfig",
        namespace=namespace,
        resync_seconds=0.5,
        node_start_deadline=30,
        # The suite's sandbox simulates pods (no chain answers): status from pods only. The
        # chain's tests turn the probe on (tests/chain/).
        chain_probe="off",
    )


@dataclass(frozen=True)
class CallerTenant:
    id: str
    name: str
    namespace: str
    token: str  # an ADMIN token's secret


@pytest.fixture
async def tenant(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> CallerTenant:
    """The test's tenant (the first one: its namespace is the test's namespace)."""
    row, _, secret = await create_token(sessions, "acme", Role.ADMIN, settings, "test admin")
    return CallerTenant(row.id, row.name, row.namespace, secret)


@pytest.fixture
async def app(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> AsyncIterator[Starlette]:
    """The whole service (control loop included), started through its own lifespan."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: Starlette, tenant: CallerTenant) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client for the app, calling as the test tenant's ADMIN."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://qaas.test",
        headers={"Authorization": f"Bearer {tenant.token}"},
    ) as http:
        yield GraphQLClient(http)
