"""Small helpers the tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.enums import Consensus
from app.domain.storage import Storage
from app.services import networks, nodes
from app.services.results import Result, commit_unless_refused
from app.store.unit import UnitOfWork

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 10.0, every: float = 0.1
) -> T:
    """Call ``probe`` until it returns something other than None/False; fail after ``within`` s.

    The bound is a liveness limit for a behaviour that is asynchronous by design (a controller
    converging), not a speed goal: speed lives in the benchmarks.
    """
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last is not None and last is not False:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last value: {last!r})")


async def holds(condition: Callable[[], bool], within: float = 10.0) -> None:
    """``eventually`` for a condition that needs no awaiting."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, within)


class GraphQLClient:
    """POSTs GraphQL to the app; ``data`` fails the test on any top-level error."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.execute(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


class Writes:
    """The write services as a mutation runs them (one unit of work each, committed unless
    refused), for tests that drive the reconciler without the GraphQL layer."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], deadline: float = 300.0) -> None:
        self.sessions = sessions
        self.deadline = deadline

    async def _run(self, change: Callable[[UnitOfWork], Awaitable[Result]]) -> Result:
        return await commit_unless_refused(self.sessions, change)

    async def create_network(
        self, tenant_id: str, name: str, consensus: Consensus, storage: Storage | None = None
    ) -> Result:
        return await self._run(
            lambda w: networks.create_network(w, tenant_id, name, consensus, self.deadline, storage)
        )

    async def add_node(self, tenant_id: str, network_id: str, name: str) -> Result:
        return await self._run(
            lambda w: nodes.add_node(w, tenant_id, network_id, name, self.deadline)
        )

    async def delete_network(self, tenant_id: str, network_id: str) -> Result:
        return await self._run(lambda w: networks.delete_network(w, tenant_id, network_id))


def sandbox_processes(root_part: str) -> list[int]:
    """Pids of the processes a sandbox kubelet runs for its process pods whose pod root folder
    (``QAAS_SANDBOX_ROOT`` in their environment, ``<state>/pods/<uid>/root``) contains
    ``root_part``: ``f"/pods/{uid}/"`` for one pod, ``f"{state_dir}/"`` for a whole sandbox."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        roots = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"QAAS_SANDBOX_ROOT=")]
        if roots and root_part.encode() in roots[0] + b"/":
            found.append(int(entry.name))
    return found
