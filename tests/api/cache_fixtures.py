"""The GraphQL endpoint as ``create_app`` serves it (guard, view, response cache) without the
control loop, so nothing writes but the test; and a count of the SQL it runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings, load_settings
from app.domain.enums import Role
from app.events.bus import InProcessBus
from app.services.api_deps import ApiDeps
from app.services.tenancy import create_token
from schema.build import QaasGraphQL
from schema.http import HttpGuard
from tests.helpers import GraphQLClient

LIST = """
query($first: Int! = 50) {
  networks(first: $first) {
    totalCount
    edges { node { id name consensus status
      nodes(first: 10) { edges { node { id name role status } } } } }
  }
}
"""


@dataclass
class Served:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    deps: ApiDeps
    graphql: QaasGraphQL
    app: HttpGuard

    async def client(self, tenant: str, role: Role = Role.ADMIN) -> tuple[str, GraphQLClient]:
        """A client calling as a new token of ``tenant`` (made if needed); and its tenant id.
        Its token has been used once and that use written (a change of the tenant's data)."""
        row, _, secret = await create_token(self.sessions, tenant, role, self.settings, "t")
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://qaas.test",
            headers={"Authorization": f"Bearer {secret}"},
        )
        api = GraphQLClient(http)
        await api.data("{ __typename }")
        await self.deps.token_use.stop()
        return row.id, api


@pytest.fixture
async def served(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> AsyncIterator[Served]:
    settings = load_settings(database_url=database_url, namespace="cache", chain_probe="off")
    deps = ApiDeps(settings=settings, sessions=sessions, bus=InProcessBus())
    graphql = QaasGraphQL(deps)
    yield Served(settings, sessions, deps, graphql, HttpGuard(graphql, deps))
    await deps.close()


class Statements:
    """Counts the statements run on an engine, but the token look-ups (every request's)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "api_tokens" not in statement:
            self.count += 1


@pytest.fixture
def statements(sessions: async_sessionmaker[AsyncSession]) -> Iterator[Statements]:
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    counter = Statements()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine.sync_engine, "before_cursor_execute", counter)
