"""Tokens: never in clear text in the logs or the database; the CLI prints one alone on its last
line; the embedded default makes the first one; production hides GraphiQL and introspection."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli import main as qaas
from app.config import Settings
from app.server import create_app
from app.store.models import Base
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient

TOKEN_CREATE = 'mutation { tokenCreate(input: {name: "ci", role: VIEWER}) { secret } }'


async def dump_database(sessions: async_sessionmaker[AsyncSession]) -> str:
    rows: list[str] = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            result = await session.execute(text(f"SELECT * FROM {table.name}"))
            rows += [repr(tuple(row)) for row in result]
    return "\n".join(rows)


async def test_tokens_appear_in_neither_logs_nor_database(
    api: GraphQLClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = (await api.data(TOKEN_CREATE))["tokenCreate"]["secret"]
    api.http.headers["Authorization"] = f"Bearer {secret}"
    await api.data("{ viewer { role } }")
    await api.execute('mutation { networkCreate(input: {name: "x"}) { network { id } } }')
    api.http.headers["Authorization"] = "Bearer qaas_wrong-token-value"
    refused = await api.http.post("/graphql", json={"query": "{ viewer { role } }"})
    assert refused.status_code == 401

    logs = caplog.text
    database = await dump_database(sessions)
    for token in (secret, tenant.token, "qaas_wrong-token-value"):
        assert token not in logs
        assert token not in database
    # Only the short hint is kept: too little to use.
    assert secret[:9] in database
    assert secret[9:] not in database


def test_cli_prints_the_new_token_alone_on_its_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QAAS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    assert qaas(["token", "create", "--tenant", "acme", "--role", "admin", "--create-tenant"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("qaas_")
    assert " " not in last
    assert (
        qaas(["token", "create", "--tenant", "Not Valid", "--role", "admin", "--create-tenant"])
        == 2
    )
    assert "RFC 1035" in capsys.readouterr().err


async def test_a_fresh_embedded_installation_prints_its_first_admin_token_once(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
) -> None:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        pass
    printed = capsys.readouterr().err
    token = next(line.strip() for line in printed.splitlines() if line.strip().startswith("qaas_"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as http:
            viewer = (
                await http.post("/graphql", json={"query": "{ viewer { role tenant { name } } }"})
            ).json()
    assert viewer["data"]["viewer"] == {"role": "ADMIN", "tenant": {"name": "local"}}
    assert "qaas_" not in capsys.readouterr().err  # the second start prints no token


@pytest.fixture
def production(settings: Settings) -> Settings:
    return settings.model_copy(update={"production": True})


async def test_production_hides_graphiql_and_introspection(
    production: Settings, sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> None:
    application = create_app(production)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        headers = {"Authorization": f"Bearer {tenant.token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as http:
            page = await http.get("/graphql", headers={"Accept": "text/html"})
            schema = await http.post("/graphql", json={"query": "{ __schema { types { name } } }"})
            works = await http.post("/graphql", json={"query": "{ viewer { role } }"})
    assert page.status_code in (400, 404)
    assert "introspection" in schema.text.lower()
    assert works.json()["data"]["viewer"]["role"] == "ADMIN"


async def test_guards_hold_on_subscriptions_too(api: GraphQLClient) -> None:
    # Over HTTP a subscription is refused, but validation (the depth guard) runs first.
    nested = "totalCount"
    for _ in range(4):
        nested = f"network {{ nodes {{ edges {{ node {{ {nested} }} }} }} }}"
    body = await api.execute(f"subscription {{ nodeStatusChanged {{ {nested} }} }}")
    assert "depth" in str(body["errors"]).lower()
