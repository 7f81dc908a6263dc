"""A node's data lives on a claim of its own: the StatefulSet's controller makes it and the
sandbox's provisioner binds it; deleting the node deletes the claim too; a node made before
StatefulSets (a Deployment) moves to one without an error."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import CLAIMS, DEPLOYMENTS, PODS, SERVICES, STATEFULSETS, Cluster, Obj
from app.cluster.errors import NotFound
from app.cluster.objects import NodeObjects
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus
from app.domain.storage import Storage
from app.services import nodes
from app.services.results import commit_unless_refused
from app.store.models import Node
from tests.conftest import CallerTenant
from tests.control.test_convergence import legacy_deployment
from tests.helpers import Writes, eventually


async def _claim(cluster: Cluster, name: str) -> Obj | None:
    try:
        return await cluster.resource(CLAIMS).get(name)
    except NotFound:
        return None


async def _bound(cluster: Cluster, name: str) -> Obj | None:
    claim = await _claim(cluster, name)
    return claim if claim and claim.get("status", {}).get("phase") == "Bound" else None


async def _exists(cluster: Cluster, kind: Any, name: str) -> bool:
    try:
        await cluster.resource(kind).get(name)
    except NotFound:
        return False
    return True


async def test_a_node_gets_a_bound_claim_of_its_network_storage(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    storage = Storage("2Gi", "qaas-local")  # the sandbox's class, named explicitly
    created = await Writes(sessions).create_network(tenant.id, "kept", Consensus.RAFT, storage)
    assert created.network is not None
    await reconciler.reconcile_once()

    claim = await eventually(lambda: _bound(cluster, "data-kept-coordinator-0"))
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "qaas-local"
    assert claim["metadata"]["labels"]["qaas.dev/network-id"] == created.network.id
    workload = await cluster.resource(STATEFULSETS).get("kept-coordinator")
    # The pod the controller makes mounts exactly that claim.
    volumes = await eventually(lambda: _pod_volumes(cluster, "kept-coordinator-0"))
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-kept-coordinator-0"}} in (
        volumes
    )
    assert workload["spec"]["serviceName"] == "kept-coordinator"


async def _pod_volumes(cluster: Cluster, pod: str) -> list[Obj] | None:
    try:
        found = await cluster.resource(PODS).get(pod)
    except NotFound:
        return None
    return list(found["spec"].get("volumes") or [])


async def test_node_delete_removes_its_statefulset_service_and_claim(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "trim", Consensus.RAFT)
    assert created.network is not None
    added = await Writes(sessions).add_node(tenant.id, created.network.id, "peer-1")
    assert added.node is not None
    peer_id = added.node.id
    await reconciler.reconcile_once()
    await eventually(lambda: _bound(cluster, "data-trim-peer-1-0"))

    deleted = await commit_unless_refused(
        sessions, lambda work: nodes.delete_node(work, tenant.id, peer_id)
    )
    assert not deleted.errors

    async def peer_gone() -> bool:
        await reconciler.reconcile_once()
        async with sessions() as session:
            row = await session.scalar(select(Node).where(Node.id == peer_id))
        left = [
            await _exists(cluster, STATEFULSETS, "trim-peer-1"),
            await _exists(cluster, SERVICES, "trim-peer-1"),
            await _claim(cluster, "data-trim-peer-1-0") is not None,
        ]
        return row is None and not any(left)

    await eventually(peer_gone, within=30)
    # The coordinator keeps everything of its own.
    assert await _bound(cluster, "data-trim-coordinator-0")
    assert await _exists(cluster, STATEFULSETS, "trim-coordinator")


async def test_a_node_that_ran_as_a_deployment_moves_to_a_statefulset(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "old", Consensus.RAFT)
    assert created.network is not None
    assert created.node is not None
    spec = NodeObjects.for_node(
        reconciler.settings, network_id=created.network.id, node_id=created.node.id,
        network="old", node="coordinator", role=created.node.role, consensus=Consensus.RAFT,
    )  # fmt: skip
    # What the previous version of QaaS made for this node: its Service and a Deployment.
    service = await cluster.resource(SERVICES).create(spec.service())
    ip = service["spec"]["clusterIP"]
    await cluster.resource(DEPLOYMENTS).create(legacy_deployment(spec, ip))

    await reconciler.reconcile_once()  # no error: the upgrade is an ordinary pass

    assert not await _exists(cluster, DEPLOYMENTS, "old-coordinator")
    workload = await cluster.resource(STATEFULSETS).get("old-coordinator")
    env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "IP", "value": ip} in env  # the same Service, the same address
    await eventually(lambda: _bound(cluster, "data-old-coordinator-0"))
    async with sessions() as session:
        row = await session.get(Node, created.node.id)
    assert row is not None
    assert (row.has_deployment, row.reconcile_error, row.retry_reason) == (True, None, None)
