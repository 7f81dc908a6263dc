"""The response cache's promises at their edges: a write committed while an answer is being
computed, and a write made by another process (bounded by QAAS_RESPONSE_CACHE_TTL). On both
databases, through the real guard and view."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from starlette.types import Receive, Scope, Send

from app.domain.enums import Consensus
from tests.api.cache_fixtures import LIST, Served, served
from tests.helpers import GraphQLClient, Writes, eventually

__all__ = ["served"]  # fixture

TOKENS = "{ tokens { totalCount edges { node { name } } } }"
REPO = Path(__file__).resolve().parents[2]


def names(data: dict[str, dict[str, list[dict[str, dict[str, str]]]]]) -> list[str]:
    return [edge["node"]["name"] for edge in data["networks"]["edges"]]


async def test_a_write_committed_during_a_read_leaves_no_stale_answer(served: Served) -> None:
    tenant_id, api = await served.client("acme")
    writes = Writes(served.sessions)
    await writes.create_network(tenant_id, "before", Consensus.RAFT)
    view = served.graphql.answer
    paused = False

    async def read_then_write(scope: Scope, receive: Receive, send: Send) -> None:
        """The view computes its answer from the database as it is; then, before the cache
        can keep that answer, a write commits (the interleaving of a read racing a write)."""
        nonlocal paused
        await view(scope, receive, send)
        if not paused:
            paused = True
            result = await writes.create_network(tenant_id, "during", Consensus.RAFT)
            assert result.network is not None, result.errors

    served.graphql.answer = read_then_write  # type: ignore[method-assign]
    assert names(await api.data(LIST)) == ["before"]  # computed before the write
    assert paused
    assert names(await api.data(LIST)) == ["before", "during"]


class Held:
    """Wraps the view: each computation, once it has answered from the database, waits until
    the test lets it hand its answer to the cache."""

    def __init__(self, served: Served) -> None:
        self.view, self.runs = served.graphql.answer, 0
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        served.graphql.answer = self  # type: ignore[method-assign]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.view(scope, receive, send)
        self.runs += 1
        self.entered.set()
        await self.release.wait()

    async def ran(self, times: int) -> bool:
        return self.runs == times


async def listed(api: GraphQLClient) -> list[str]:
    return names(await api.data(LIST))


async def test_identical_requests_share_one_computation(served: Served) -> None:
    tenant_id, api = await served.client("acme")
    await Writes(served.sessions).create_network(tenant_id, "one", Consensus.RAFT)
    held = Held(served)
    first = asyncio.create_task(listed(api))
    await held.entered.wait()
    second = asyncio.create_task(listed(api))

    async def joined() -> bool:
        return served.graphql.cache.joined == 1

    await eventually(joined)
    held.release.set()
    assert await first == await second == ["one"]
    assert held.runs == 1


async def test_a_request_after_a_write_does_not_join_an_older_computation(
    served: Served,
) -> None:
    tenant_id, api = await served.client("acme")
    writes = Writes(served.sessions)
    await writes.create_network(tenant_id, "one", Consensus.RAFT)
    held = Held(served)
    first = asyncio.create_task(listed(api))
    await held.entered.wait()  # computed from the database before the write
    await writes.create_network(tenant_id, "two", Consensus.RAFT)
    second = asyncio.create_task(listed(api))  # starts after the write: must see it
    await eventually(lambda: held.ran(2))
    held.release.set()
    assert await first == ["one"]
    assert await second == ["one", "two"]
    assert served.graphql.cache.joined == 0
    assert await listed(api) == ["one", "two"]


async def test_another_processs_write_shows_within_the_ttl(served: Served) -> None:
    now = [1000.0]
    cache = served.graphql.cache
    cache.clock = lambda: now[0]
    _, api = await served.client("acme")
    assert (await api.data(TOKENS))["tokens"]["totalCount"] == 1

    # `qaas token create` in a process of its own: this process's change count cannot see it.
    env = {**os.environ, "QAAS_DATABASE_URL": served.settings.database_url, "PYTHONPATH": str(REPO)}
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys, app.cli; sys.exit(app.cli.main(sys.argv[1:]))",
        "token", "create",
        "--tenant", "acme", "--role", "viewer", "--name", "from-cli",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await cli.communicate()
    assert cli.returncode == 0, (out, err)

    now[0] += cache.ttl - 0.5  # within the TTL: the kept answer (documented staleness)
    assert (await api.data(TOKENS))["tokens"]["totalCount"] == 1
    now[0] += 1.0  # past it: computed again
    tokens = (await api.data(TOKENS))["tokens"]
    assert tokens["totalCount"] == 2
    assert "from-cli" in [edge["node"]["name"] for edge in tokens["edges"]]
