"""Concurrent mutations and SQLite's one write lock, through the real API.

Many ``networkCreate`` in flight at once all succeed, even with a busy timeout far shorter than
the time they take together (this process's writers take turns instead of racing in SQLite's
busy handler); and a write lock held by another process past the busy timeout is answered
UNAVAILABLE with ``retryAfterSeconds``, nothing written, never "Unexpected error.".
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import make_url

from app.config import Settings
from tests.api.queries import network_count
from tests.helpers import GraphQLClient

CREATE = """
mutation($name: String!) {
  networkCreate(input: {name: $name}) { network { name } userErrors { code } }
}
"""
IN_FLIGHT = 32


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # 50 ms: 32 writers through SQLite's busy handler alone would not all get the lock in time.
    return settings.model_copy(update={
        "sqlite_busy_timeout": 0.05, "tenant_max_networks": IN_FLIGHT + 1,
        "mutation_burst": IN_FLIGHT + 1,
    })  # fmt: skip


async def test_many_concurrent_creates_all_succeed(api: GraphQLClient) -> None:
    answers = await asyncio.gather(
        *(api.execute(CREATE, name=f"net-{i}") for i in range(IN_FLIGHT))
    )
    assert [a.get("errors") for a in answers] == [None] * IN_FLIGHT, answers
    made = sorted(a["data"]["networkCreate"]["network"]["name"] for a in answers)
    assert made == sorted(f"net-{i}" for i in range(IN_FLIGHT))
    assert await network_count(api) == IN_FLIGHT


async def test_a_write_lock_held_elsewhere_is_unavailable(
    api: GraphQLClient, settings: Settings
) -> None:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    other = sqlite3.connect(str(url.database), isolation_level=None)  # another "process"
    try:
        other.execute("BEGIN IMMEDIATE")
        body: dict[str, Any] = await api.execute(CREATE, name="held")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert body.get("data") is None  # networkCreate's payload is non-null: the error nulls data
    [error] = body["errors"]
    assert error["extensions"] == {"code": "UNAVAILABLE", "retryAfterSeconds": 1}
    assert "busy" in error["message"]
    assert await network_count(api) == 0  # nothing was written
    # The lock is gone: the same request succeeds.
    again = await api.data(CREATE, name="held")
    assert again["networkCreate"] == {"network": {"name": "held"}, "userErrors": []}
