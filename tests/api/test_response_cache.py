"""The response cache (schema/response_cache.py): what it keeps, for whom, and what it never
keeps. On both databases, through the real guard and view, without the control loop."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.control.node_writer import NodeWriter
from app.domain.enums import Consensus, NodeStatus, Role
from app.events.bus import InProcessBus
from app.store.models import Node
from tests.api.cache_fixtures import LIST, Served, Statements, served, statements
from tests.api.queries import NETWORK_CREATE
from tests.helpers import Writes

__all__ = ["served", "statements"]  # fixtures

VIEWER = "{ viewer { role tenant { name } } }"


def statuses(data: dict[str, object]) -> list[str]:
    networks = data["networks"]
    assert isinstance(networks, dict)
    return [
        node["node"]["status"]
        for edge in networks["edges"]
        for node in edge["node"]["nodes"]["edges"]
    ]


async def test_an_identical_query_is_answered_without_sql(
    served: Served, statements: Statements
) -> None:
    tenant_id, api = await served.client("acme")
    await Writes(served.sessions).create_network(tenant_id, "one", Consensus.RAFT)
    first = await api.data(LIST)
    ran = statements.count
    assert ran > 0
    assert await api.data(LIST) == first
    # Spacing and comments do not make another query.
    respaced = "# the list, again\n" + " ".join(LIST.split())
    assert await api.data(respaced) == first
    assert statements.count == ran, "a cached answer ran SQL"


async def test_a_mutation_is_seen_by_the_very_next_read(served: Served) -> None:
    _, api = await served.client("acme")
    assert (await api.data(LIST))["networks"]["totalCount"] == 0
    created = await api.data(NETWORK_CREATE, name="fresh")
    assert created["networkCreate"]["userErrors"] == []
    after = await api.data(LIST)
    assert after["networks"]["totalCount"] == 1
    assert [e["node"]["name"] for e in after["networks"]["edges"]] == ["fresh"]


async def test_a_status_write_by_the_node_writer_invalidates(served: Served) -> None:
    tenant_id, api = await served.client("acme")
    result = await Writes(served.sessions).create_network(tenant_id, "watched", Consensus.RAFT)
    assert result.network is not None
    async with served.sessions() as session:
        node_id = await session.scalar(select(Node.id).where(Node.network_id == result.network.id))
    assert node_id is not None
    writer = NodeWriter(served.sessions, InProcessBus())

    async def running(_: AsyncSession, node: Node) -> bool:
        node.has_service = node.has_deployment = True
        node.pod_phase, node.pod_ready = "Running", True
        return True

    async def crashed(_: AsyncSession, node: Node) -> bool:
        node.pod_ready, node.restart_count = False, node.restart_count + 1
        node.pod_reason = "CrashLoopBackOff"
        return True

    # The writer the pod observer and the reconciler write through. The first write also
    # finishes the network's operation; the second changes nothing but the node.
    assert await writer.write(node_id, running) is not None
    assert statuses(await api.data(LIST)) == [NodeStatus.RUNNING.value]
    view = await writer.write(node_id, crashed)
    assert view is not None
    assert view.status is not NodeStatus.RUNNING
    assert statuses(await api.data(LIST)) == [view.status.value]


async def test_another_tenants_writes_keep_the_entries(
    served: Served, statements: Statements
) -> None:
    _, api = await served.client("acme")
    other_id, _ = await served.client("globex")
    writes = Writes(served.sessions)
    first = await api.data(LIST)
    result = await writes.create_network(other_id, "theirs", Consensus.RAFT)
    assert result.network is not None
    async with served.sessions() as session:
        node_id = await session.scalar(select(Node.id).where(Node.network_id == result.network.id))
    assert node_id is not None

    async def observed(_: AsyncSession, node: Node) -> bool:
        node.pod_phase = "Pending"
        node.restart_count += 1
        return True

    assert await NodeWriter(served.sessions, InProcessBus()).write(node_id, observed) is not None
    ran = statements.count
    assert await api.data(LIST) == first
    assert statements.count == ran, "another tenant's write dropped this tenant's answer"


async def test_a_write_that_changes_nothing_keeps_the_answers(
    served: Served, statements: Statements
) -> None:
    tenant_id, api = await served.client("acme")
    result = await Writes(served.sessions).create_network(tenant_id, "calm", Consensus.RAFT)
    assert result.network is not None
    async with served.sessions() as session:
        node_id = await session.scalar(select(Node.id).where(Node.network_id == result.network.id))
    assert node_id is not None
    first = await api.data(LIST)

    async def same_facts(_: AsyncSession, node: Node) -> bool:
        node.pod_phase, node.restart_count = node.pod_phase, node.restart_count
        return False

    # The observer and the reconciler set facts the row may have already; committed, unchanged.
    assert await NodeWriter(served.sessions, InProcessBus()).write(node_id, same_facts) is None
    ran = statements.count
    assert await api.data(LIST) == first
    assert statements.count == ran, "an unchanged row dropped the answers"


async def test_variables_and_roles_make_different_entries(served: Served) -> None:
    tenant_id, admin = await served.client("acme", Role.ADMIN)
    _, viewer = await served.client("acme", Role.VIEWER)
    writes = Writes(served.sessions)
    for name in ("a", "b"):
        await writes.create_network(tenant_id, name, Consensus.RAFT)
    before = len(served.graphql.cache)
    one = await admin.data(LIST, first=1)
    two = await admin.data(LIST, first=2)
    assert len(one["networks"]["edges"]) == 1
    assert len(two["networks"]["edges"]) == 2
    assert (await admin.data(VIEWER))["viewer"]["role"] == "ADMIN"
    assert (await viewer.data(VIEWER))["viewer"]["role"] == "VIEWER"
    assert len(served.graphql.cache) == before + 4


async def test_errors_are_not_kept(served: Served) -> None:
    _, api = await served.client("acme")
    wrong = "{ networks(first: 1000) { totalCount } }"
    cache = served.graphql.cache
    kept, hits = len(cache), cache.hits
    for _ in range(2):
        body = await api.execute(wrong)
        assert body["errors"], body
    assert (len(cache), cache.hits) == (kept, hits)


async def test_a_query_of_a_live_field_is_not_kept(served: Served) -> None:
    tenant_id, api = await served.client("acme")
    await Writes(served.sessions).create_network(tenant_id, "logged", Consensus.RAFT)
    # A node's log is read from its pod, not from the database: no commit says it changed.
    through_a_fragment = """
    { networks { edges { node { nodes { edges { node { ...Tail } } } } } } }
    fragment Tail on Node { name logs(tail: 5) }
    """
    cache = served.graphql.cache
    kept = len(cache)
    for _ in range(2):
        data = await api.data(through_a_fragment)
        assert data["networks"]["edges"][0]["node"]["nodes"]["edges"][0]["node"]["logs"] == []
    assert len(cache) == kept
