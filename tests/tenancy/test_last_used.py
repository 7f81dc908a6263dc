"""A token's ``last_used_at`` is written when it authenticates, at most once per
``QAAS_TOKEN_TOUCH_SECONDS`` per token, off the request path; ADMINs see it in ``tokens``."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.config import Settings
from app.services.api_deps import ApiDeps
from app.services.token_use import TokenUse
from app.store.engine import make_engine, make_sessionmaker
from app.store.models import ApiToken
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient, eventually

TOKENS = "{ tokens { edges { node { name lastUsedAt } } } }"


@pytest.fixture
def touch() -> float:
    """QAAS_TOKEN_TOUCH_SECONDS: the default unless a test parametrizes it."""
    return 60.0


@pytest.fixture
def settings(settings: Settings, touch: float) -> Settings:
    return settings.model_copy(update={"token_touch_seconds": touch})


async def _last_used(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> datetime.datetime | None:
    async with sessions() as session:
        return await session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.tenant_id == tenant.id)
        )


@pytest.mark.parametrize(("touch", "writes_again"), [(60.0, False), (0.0, True)])
async def test_last_used_at_is_written_once_per_throttle_window(
    app: Starlette,
    api: GraphQLClient,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
    writes_again: bool,
) -> None:
    assert await _last_used(sessions, tenant) is None
    first = await api.data(TOKENS)  # authenticates, then answers: the write is not awaited
    [token] = [edge["node"] for edge in first["tokens"]["edges"]]
    assert token["name"] == "test admin"

    async def written() -> datetime.datetime | None:
        return await _last_used(sessions, tenant)

    when = await eventually(written)
    deps: ApiDeps = app.state.deps
    await api.data(TOKENS)
    await deps.token_use.stop()  # waits for a write if the second call started one
    again = await _last_used(sessions, tenant)
    assert (again != when) is writes_again, (when, again)
    listed = await api.data(TOKENS)
    shown = listed["tokens"]["edges"][0]["node"]["lastUsedAt"]
    assert datetime.datetime.fromisoformat(shown) >= when


async def test_a_failed_write_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-folder" / "qaas.db"  # SQLite cannot open it: writes fail
    engine = make_engine(f"sqlite+aiosqlite:///{missing}")
    use = TokenUse(make_sessionmaker(engine), every=60)
    try:
        with caplog.at_level(logging.WARNING, logger="qaas.tokens"):
            use.used("some-token")
            await use.stop()
            use.used("some-token")  # within the window, but the first write was lost
            await use.stop()
    finally:
        await engine.dispose()
    failures = [r for r in caplog.records if "could not record the last use" in r.getMessage()]
    assert len(failures) == 2, caplog.text
    assert all(r.levelno == logging.WARNING for r in failures)
