"""A bearer token is looked up once per ``QAAS_TOKEN_RECHECK_SECONDS``, not once per request
(app/services/token_cache.py), and that changes nothing a caller can see: a token revoked by
tokenRevoke is refused on its very next request, an expired one as soon as it expires, and one
revoked in the database by another process within the recheck interval.

The service is the real HTTP path (the guard, then the GraphQL view) on the test database.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.domain.enums import Role
from app.events.bus import InProcessBus
from app.services.api_deps import ApiDeps
from app.services.tenancy import create_token, hash_secret
from app.store.engine import make_engine, make_sessionmaker
from app.store.models import ApiToken, utcnow
from schema.build import QaasGraphQL
from schema.http import HttpGuard

VIEWER = "{ viewer { role } }"
BOUND = 10.0  # seconds a condition may take at most


@dataclass
class Service:
    http: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    token_reads: list[str]  # statements that read a token by its hash

    async def status(self, secret: str) -> tuple[int, str]:
        response = await self.http.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {secret}"}
        )
        return response.status_code, response.text

    async def token(self, role: Role = Role.ADMIN) -> str:
        _, _, secret = await create_token(self.sessions, "acme", role, SETTINGS, "t")
        return secret


SETTINGS = load_settings(token_recheck_seconds=60.0)


async def _service(database_url: str, recheck: float) -> AsyncIterator[Service]:
    settings = load_settings(database_url=database_url, token_recheck_seconds=recheck)
    engine = make_engine(database_url)
    reads: list[str] = []

    def count(*args: object) -> None:
        statement = str(args[2])
        if "FROM api_tokens" in statement and "secret_hash" in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    deps = ApiDeps(settings=settings, sessions=make_sessionmaker(engine), bus=InProcessBus())
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=HttpGuard(QaasGraphQL(deps), deps)),
            base_url="http://qaas.test",
        ) as http:
            yield Service(http, deps.sessions, reads)
    finally:
        await deps.close()
        await engine.dispose()


@pytest.fixture
async def service(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Service]:
    """Tokens remembered for a minute: longer than any test here."""
    async for made in _service(database_url, recheck=60.0):
        yield made


@pytest.fixture
async def quick(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Service]:
    """Tokens remembered for half a second."""
    async for made in _service(database_url, recheck=0.5):
        yield made


async def test_a_token_is_read_once_for_many_requests(service: Service) -> None:
    secret = await service.token()
    for _ in range(5):
        assert (await service.status(secret))[0] == 200
    assert len(service.token_reads) == 1


async def test_a_token_revoked_by_token_revoke_is_refused_on_its_next_request(
    service: Service,
) -> None:
    admin, doomed = await service.token(), await service.token(Role.VIEWER)
    assert (await service.status(doomed))[0] == 200  # remembered now
    listed = await service.http.post(
        "/graphql",
        json={"query": "{ tokens { edges { node { id role } } } }"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    ids = [e["node"]["id"] for e in listed.json()["data"]["tokens"]["edges"]
           if e["node"]["role"] == "VIEWER"]  # fmt: skip
    revoked = await service.http.post(
        "/graphql",
        json={
            "query": "mutation($id: ID!) { tokenRevoke(input: {id: $id}) { userErrors { code } } }",
            "variables": {"id": ids[0]},
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert revoked.json()["data"]["tokenRevoke"]["userErrors"] == []
    status, text = await service.status(doomed)
    assert status == 401
    assert "this token was revoked" in text
    assert (await service.status(admin))[0] == 200


async def test_a_remembered_token_is_refused_once_it_expires(service: Service) -> None:
    secret = await service.token()
    expires = utcnow() + datetime.timedelta(seconds=1)
    async with service.sessions.begin() as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.secret_hash == hash_secret(secret))
            .values(expires_at=expires)
        )
    assert (await service.status(secret))[0] == 200
    deadline = time.monotonic() + BOUND
    while (answer := await service.status(secret))[0] == 200:
        assert time.monotonic() < deadline
    assert utcnow() >= expires  # not refused before it expired
    assert answer[0] == 401
    assert "this token has expired" in answer[1]
    assert len(service.token_reads) == 1  # refused from memory, well before the minute


async def test_a_token_revoked_by_another_process_is_refused_within_the_recheck_interval(
    quick: Service,
) -> None:
    secret = await quick.token()
    assert (await quick.status(secret))[0] == 200
    async with quick.sessions.begin() as session:  # as `qaas token revoke` does, elsewhere
        await session.execute(
            update(ApiToken)
            .where(ApiToken.secret_hash == hash_secret(secret))
            .values(revoked_at=utcnow())
        )
    revoked_at = time.monotonic()
    while (await quick.status(secret))[0] == 200:
        assert time.monotonic() - revoked_at < BOUND
    status, text = await quick.status(secret)
    assert status == 401
    assert "this token was revoked" in text
