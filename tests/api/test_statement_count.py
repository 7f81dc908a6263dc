"""What a read costs per request: a dashboard's list of N networks with their nodes,
coordinator IPs and statuses costs the same number of SQL statements whatever N is (the first
node pages of all networks, their statuses and coordinator IPs come from one statement), and
a repeated document is parsed and validated once.

The service here is the real HTTP path (the guard, then the GraphQL view) on the test
database, without the control loop: the networks are seeded as rows, and no reconciler may
add statements of its own while they are counted.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from strawberry.extensions import ParserCache, ValidationCache

from app.config import load_settings
from app.domain.enums import Consensus, NodeRole, NodeStatus, Role
from app.events.bus import InProcessBus
from app.services.api_deps import ApiDeps
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.models import Network, Node, utcnow
from schema.build import CACHE_SIZE, QaasGraphQL
from schema.http import HttpGuard
from tests.helpers import GraphQLClient

DASHBOARD = """
query($first: Int!, $nodes: Int!) {
  networks(first: $first) {
    totalCount
    edges { node {
      id name consensus status coordinatorIp
      nodes(first: $nodes) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node {
          id name role status statusReason
          pod { name phase ready }
          chain { blockNumber peerCount }
        } }
      }
    } }
  }
}
"""
NEXT_NODES = """
query($first: Int!, $nodes: Int!, $after: String) {
  networks(first: $first) { edges { node { name nodes(first: $nodes, after: $after) {
    totalCount edges { node { name } } } } } }
}
"""
NODES = 4  # a coordinator and three peers


class Statements:
    """What the engine sent, while counting."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.counting = False

    def __call__(self, *args: Any) -> None:
        if self.counting:
            self.sent.append(args[2])


@dataclass
class Service:
    api: GraphQLClient
    deps: ApiDeps
    sessions: async_sessionmaker[AsyncSession]
    tenant_id: str
    statements: Statements


@pytest.fixture
async def service(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Service]:
    """The guard and the GraphQL view on an engine of their own, whose statements are counted
    (``sessions`` emptied the database first)."""
    # The response cache off: these tests measure what computing an answer costs.
    settings = load_settings(database_url=database_url, response_cache_entries=0)
    engine: AsyncEngine = make_engine(database_url)
    statements = Statements()
    event.listen(engine.sync_engine, "before_cursor_execute", statements)
    deps = ApiDeps(settings=settings, sessions=make_sessionmaker(engine), bus=InProcessBus())
    row, _, secret = await create_token(sessions, "acme", Role.ADMIN, settings, "dashboard")
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=HttpGuard(QaasGraphQL(deps), deps)),
            base_url="http://qaas.test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as http:
            yield Service(GraphQLClient(http), deps, deps.sessions, row.id, statements)
    finally:
        await deps.close()
        await engine.dispose()


async def seed(service: Service, networks: range, nodes: int = NODES) -> None:
    """Running networks numbered ``networks``, of ``nodes`` nodes each, as the reconciler and
    the pod watch would have left them (IPs, pods, chain facts); oldest first by number."""
    start = utcnow() - datetime.timedelta(hours=1)
    rows: list[Network | Node] = []
    for n in networks:
        at = start + datetime.timedelta(seconds=n)
        network = Network(
            tenant_id=service.tenant_id, name=f"net-{n:03}", consensus=Consensus.RAFT, created_at=at
        )
        rows.append(network)
        for i in range(nodes):
            role = NodeRole.COORDINATOR if i == 0 else NodeRole.PEER
            node = Node(
                network=network, name="coordinator" if i == 0 else f"peer-{i}", role=role,
                status=NodeStatus.RUNNING, status_changed_at=at, service_ip=f"10.0.{n}.{i + 1}",
                pod_name=f"pod-{n}-{i}", pod_phase="Running", pod_ready=True,
                chain_probed_at=at, chain_block_number=7, chain_peer_count=nodes - 1,
                created_at=at + datetime.timedelta(milliseconds=i),
            )  # fmt: skip
            rows.append(node)
    async with service.sessions.begin() as session:
        session.add_all(rows)


async def counted(service: Service, query: str, **variables: Any) -> tuple[dict[str, Any], int]:
    """The answer to ``query`` and how many statements it took (once the token's last use was
    written: that write is throttled, and happens off the request path)."""
    await service.api.data("{ viewer { role } }")
    await service.deps.token_use.stop()
    service.statements.sent.clear()
    service.statements.counting = True
    try:
        data = await service.api.data(query, **variables)
    finally:
        service.statements.counting = False
    return data, len(service.statements.sent)


async def test_a_dashboard_list_costs_the_same_statements_for_1_10_and_50_networks(
    service: Service,
) -> None:
    counts: dict[int, int] = {}
    seeded = 0
    for n in (1, 10, 50):
        await seed(service, range(seeded, n))
        seeded = n
        data, counts[n] = await counted(service, DASHBOARD, first=50, nodes=10)
        edges = data["networks"]["edges"]
        assert data["networks"]["totalCount"] == n == len(edges)
        for i, edge in enumerate(edges):
            network = edge["node"]
            assert network["status"] == "RUNNING"
            assert network["coordinatorIp"] == f"10.0.{i}.1"
            page = network["nodes"]
            assert page["totalCount"] == NODES
            assert not page["pageInfo"]["hasNextPage"]
            names = [e["node"]["name"] for e in page["edges"]]
            assert names == ["coordinator", "peer-1", "peer-2", "peer-3"]
            assert all(e["node"]["pod"]["ready"] for e in page["edges"])
            assert all(e["node"]["chain"]["blockNumber"] == 7 for e in page["edges"])
    # the networks with their count, then their nodes, whole: the statuses, the coordinator IPs
    # and the first pages of nodes come from them (the token was looked up by ``counted``'s
    # first request, and remembered)
    assert counts == {1: 2, 10: 2, 50: 2}, service.statements.sent


async def test_batched_pages_are_exact(service: Service) -> None:
    """Short pages say there is more and count every node; a network without nodes has an
    empty page; the page after a cursor (one statement pair per network) goes on from it."""
    await seed(service, range(3))
    await seed(service, range(3, 4), nodes=0)
    data = await service.api.data(DASHBOARD, first=10, nodes=3)
    pages = [e["node"]["nodes"] for e in data["networks"]["edges"]]
    assert [p["totalCount"] for p in pages] == [NODES, NODES, NODES, 0]
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True, True, True, False]
    assert [len(p["edges"]) for p in pages] == [3, 3, 3, 0]
    after = pages[0]["pageInfo"]["endCursor"]
    rest = await service.api.data(NEXT_NODES, first=1, nodes=3, after=after)
    page = rest["networks"]["edges"][0]["node"]["nodes"]
    assert page == {"totalCount": NODES, "edges": [{"node": {"name": "peer-3"}}]}
    bad = await service.api.execute(NEXT_NODES, first=1, nodes=3, after="garbage")
    assert "cursor" in bad["errors"][0]["message"]
    assert bad["data"] is None


def hits_and_misses(cached: Callable[..., Any]) -> tuple[int, int]:
    """Of a function wrapped by functools.lru_cache, as Strawberry's caches are."""
    info = cached.cache_info()  # type: ignore[attr-defined]
    return info.hits, info.misses


async def test_a_repeated_document_is_parsed_and_validated_once(service: Service) -> None:
    caches = [
        ParserCache(maxsize=CACHE_SIZE).cached_parse_document,
        ValidationCache(maxsize=CACHE_SIZE).cached_validate_document,
    ]
    query = "query Repeated { networks(first: 3) { totalCount } }"  # no other test sends it
    before = [hits_and_misses(cache) for cache in caches]
    for _ in range(3):
        await service.api.data(query)
    for cache, (hits, misses) in zip(caches, before, strict=True):
        hits_now, misses_now = hits_and_misses(cache)
        assert (hits_now - hits, misses_now - misses) in ((2, 1), (3, 0)), cache
