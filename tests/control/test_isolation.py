"""One node's or one tenant's trouble stays theirs: a refused node says why on its own status
and operation, the pass goes on with the next node, deletions and orphans; a node that never
gets a pod still meets its start deadline; an object with our labels but no node id, or a
broken tenant, does not stop the other tenants; a stored status that disagrees with its facts
is repaired even when the node looks settled."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import RESOURCE_QUOTAS, SERVICES, STATEFULSETS, Cluster
from app.cluster.errors import NotFound
from app.cluster.objects import NodeObjects, selector_for
from app.config import Settings
from app.control.reconciler import PassFailed, Reconciler
from app.domain.enums import Consensus, NodeRole, NodeStatus, OperationState, Role
from app.services.tenancy import create_token
from app.store.models import Network, Node, Operation, Tenant
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually


async def _passes(reconciler: Reconciler, count: int = 2) -> None:
    """Run passes; one that reports a failed tenant still ran for every tenant."""
    for _ in range(count):
        try:
            await reconciler.reconcile_once()
        except Exception as error:  # reported after every tenant was tried
            print(f"pass reported: {error}")


async def _node(sessions: async_sessionmaker[AsyncSession], network_id: str) -> Node:
    async with sessions() as session:
        node = await session.scalar(select(Node).where(Node.network_id == network_id))
    assert node is not None
    return node


async def _operation(sessions: async_sessionmaker[AsyncSession], node_id: str) -> Operation:
    async with sessions() as session:
        operation = await session.scalar(select(Operation).where(Operation.node_id == node_id))
    assert operation is not None
    return operation


@pytest.fixture
async def no_workloads(cluster: Cluster) -> AsyncIterator[None]:
    """A real ResourceQuota that lets no StatefulSet in: creating one gets a real 403."""
    quotas = cluster.resource(RESOURCE_QUOTAS)
    await quotas.create(
        {"metadata": {"name": "no-workloads"}, "spec": {"hard": {"count/statefulsets.apps": "0"}}}
    )

    async def enforced() -> bool:  # the quota controller must have counted before admission
        return bool((await quotas.get("no-workloads")).get("status", {}).get("hard"))

    await eventually(enforced)
    yield
    await quotas.delete("no-workloads")


async def test_a_refused_node_says_why_and_the_pass_goes_on(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
    settings: Settings,
    no_workloads: None,
) -> None:
    writes = Writes(sessions)
    refused = await writes.create_network(tenant.id, "refused", Consensus.RAFT)
    leaving = await writes.create_network(tenant.id, "leaving", Consensus.RAFT)
    assert refused.network is not None
    assert leaving.network is not None
    # An orphan: our labels, a node id with no row.
    orphan = NodeObjects.for_node(
        settings, network_id="gone", node_id=str(uuid.uuid4()), network="ghost",
        node="coordinator", role=NodeRole.COORDINATOR, consensus=Consensus.RAFT,
    )  # fmt: skip
    await cluster.resource(SERVICES).create(orphan.service())
    await _passes(reconciler, 1)
    await writes.delete_network(tenant.id, leaving.network.id)
    await _passes(reconciler, 3)

    node = await _node(sessions, refused.network.id)
    assert node.status is NodeStatus.PROVISIONING, (node.status, node.status_reason)
    assert node.status_reason is not None
    assert node.status_reason.startswith("Retrying: Forbidden: "), node.status_reason
    assert "exceeded quota" in node.status_reason
    operation = await _operation(sessions, node.id)
    assert operation.state is OperationState.PROVISIONING
    assert operation.message == node.status_reason
    # The nodes and objects after it were not skipped.
    with pytest.raises(NotFound):
        await cluster.resource(SERVICES).get(orphan.name)
    async with sessions() as session:
        assert await session.get(Network, leaving.network.id) is None


async def test_a_node_that_never_gets_a_pod_meets_its_deadline(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    no_workloads: None,
) -> None:
    created = await Writes(sessions, deadline=1.0).create_network(
        tenant.id, "podless", Consensus.RAFT
    )
    assert created.network is not None
    network_id = created.network.id

    async def failed() -> Node | None:
        await _passes(reconciler, 1)
        node = await _node(sessions, network_id)
        return node if node.status is NodeStatus.FAILED else None

    node = await eventually(failed, within=20)
    assert node.status_reason is not None
    assert "start deadline" in node.status_reason
    assert "exceeded quota" in node.status_reason
    operation = await _operation(sessions, node.id)
    assert operation.state is OperationState.FAILED
    assert operation.message == node.status_reason


@pytest.fixture
async def other_tenant(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, cluster: Cluster
) -> AsyncIterator[CallerTenant]:
    """A second tenant, in a namespace of its own (removed afterwards)."""
    row, _, secret = await create_token(
        sessions, f"other-{uuid.uuid4().hex[:6]}", Role.ADMIN, settings
    )
    yield CallerTenant(row.id, row.name, row.namespace, secret)
    await _delete_namespace(cluster, row.namespace)


async def _delete_namespace(cluster: Cluster, name: str) -> None:
    try:
        await client.CoreV1Api(cluster.api_client).delete_namespace(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


async def test_an_object_without_a_node_id_stops_nobody(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
    other_tenant: CallerTenant,
    settings: Settings,
) -> None:
    # In the first tenant's namespace: our labels, no node id (made or edited by hand).
    stray = NodeObjects.for_node(
        settings, network_id="x", node_id="y", network="stray", node="coordinator",
        role=NodeRole.COORDINATOR, consensus=Consensus.RAFT,
    ).service()  # fmt: skip
    labels: dict[str, Any] = stray["metadata"]["labels"]
    labels.pop(next(key for key in labels if key.endswith("node-id")))
    await cluster.resource(SERVICES).create(stray)
    mine = await Writes(sessions).create_network(tenant.id, "mine", Consensus.RAFT)
    theirs = await Writes(sessions).create_network(other_tenant.id, "theirs", Consensus.RAFT)
    assert mine.network is not None
    assert theirs.network is not None

    await reconciler.reconcile_once()  # does not raise: nothing failed

    selector = selector_for(settings.instance)
    for namespace, name in ((tenant.namespace, "mine"), (other_tenant.namespace, "theirs")):
        items, _ = await cluster.resource(STATEFULSETS, namespace).list(selector)
        assert [item["metadata"]["name"] for item in items] == [f"{name}-coordinator"]
    await cluster.resource(SERVICES).get(stray["metadata"]["name"])  # left alone


async def test_a_failing_tenant_stops_nobody(
    monkeypatch: pytest.MonkeyPatch,
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
    other_tenant: CallerTenant,
    settings: Settings,
) -> None:
    mine = await Writes(sessions).create_network(tenant.id, "mine", Consensus.RAFT)
    theirs = await Writes(sessions).create_network(other_tenant.id, "theirs", Consensus.RAFT)
    assert mine.network is not None
    assert theirs.network is not None
    broken = "the database went away"
    prepare = reconciler.namespaces.prepare

    async def first_tenant_fails(of: Tenant) -> None:
        if of.id == tenant.id:  # not a Kubernetes error: the old pass stopped every tenant
            raise OSError(broken)
        await prepare(of)

    monkeypatch.setattr(reconciler.namespaces, "prepare", first_tenant_fails)
    with pytest.raises(PassFailed, match=broken):
        await reconciler.reconcile_once()
    # The other tenant was served; the broken one's node says why it is not going anywhere.
    items, _ = await cluster.resource(STATEFULSETS, other_tenant.namespace).list(
        selector_for(settings.instance)
    )
    assert [item["metadata"]["name"] for item in items] == ["theirs-coordinator"]
    node = await _node(sessions, mine.network.id)
    assert node.status_reason == f"Retrying: OSError: {broken}", node.status_reason


async def test_a_status_that_disagrees_with_its_facts_is_repaired(
    sessions: async_sessionmaker[AsyncSession], reconciler: Reconciler, tenant: CallerTenant
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "settled", Consensus.RAFT)
    assert created.network is not None
    await _passes(reconciler, 2)
    node = await _node(sessions, created.network.id)
    async with sessions.begin() as session:  # what a lost update left behind
        row = await session.get(Node, node.id)
        assert row is not None
        row.pod_phase, row.pod_ready, row.start_deadline = "Running", True, None
        row.status, row.status_reason = NodeStatus.STARTING, None

    await reconciler.reconcile_once()

    repaired = await _node(sessions, created.network.id)
    assert repaired.status is NodeStatus.RUNNING
