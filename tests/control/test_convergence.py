"""Level-triggered convergence: drift is repaired, crashes are survived, orphans and deleted
networks leave nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import (
    CLAIMS,
    DEPLOYMENTS,
    SERVICES,
    STATEFULSETS,
    Cluster,
    Resource,
    ResourceKind,
)
from app.cluster.errors import Conflict, NotFound
from app.cluster.objects import NodeObjects
from app.config import Settings
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, NodeRole, OperationState
from app.events.bus import InProcessBus
from app.store.models import Network, Node, Operation
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually

MANAGED = "app.kubernetes.io/managed-by=qaas"


async def _names(
    cluster: Cluster, kinds: tuple[ResourceKind, ...] = (SERVICES, STATEFULSETS)
) -> set[str]:
    names = set()
    for kind in kinds:
        items, _ = await cluster.resource(kind).list(MANAGED)
        names |= {f"{kind.kind}/{item['metadata']['name']}" for item in items}
    return names


async def _network(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant, name: str
) -> str:
    created = await Writes(sessions).create_network(tenant.id, name, Consensus.RAFT)
    assert created.network is not None
    return created.network.id


async def test_objects_deleted_behind_our_back_come_back(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    network_id = await _network(sessions, tenant, "drift")
    await Writes(sessions).add_node(tenant.id, network_id, "peer-1")
    await reconciler.reconcile_once()
    services, workloads = cluster.resource(SERVICES), cluster.resource(STATEFULSETS)
    old_ip = (await services.get("drift-coordinator"))["spec"]["clusterIP"]

    await workloads.delete("drift-peer-1")
    await services.delete("drift-coordinator")
    await _until_gone(workloads, "drift-peer-1")
    await reconciler.reconcile_once()

    assert await _names(cluster) == {
        "Service/drift-coordinator", "Service/drift-peer-1",
        "StatefulSet/drift-coordinator", "StatefulSet/drift-peer-1",
    }  # fmt: skip
    new_ip = (await services.get("drift-coordinator"))["spec"]["clusterIP"]
    peer = await workloads.get("drift-peer-1")
    env = {e["name"]: e["value"] for e in peer["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The coordinator's new address reaches the peer: it is what the peer must dial.
    assert env["COORDINATING_IP"] == new_ip
    coordinator = await workloads.get("drift-coordinator")
    coordinator_env = coordinator["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "IP", "value": new_ip} in coordinator_env
    if new_ip == old_ip:  # the allocator may hand the same address back; still converged
        pytest.skip("the apiserver reused the ClusterIP; the address change was not exercised")


async def _has(cluster: Cluster, names: set[str]) -> bool:
    return names <= await _names(cluster, (CLAIMS,))


async def _no_claims(cluster: Cluster) -> bool:
    return not await _names(cluster, (CLAIMS,))


def legacy_deployment(spec: NodeObjects, ip: str) -> dict[str, Any]:
    """A node's Deployment as QaaS made it before StatefulSets: the same pod, no claim."""
    template = spec.pod_template(ip, None)
    container = template["spec"]["containers"][0]
    del container["volumeMounts"], container["readinessProbe"]
    container["env"] = [e for e in container["env"] if e["name"] != "KEEP_FILES"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": spec.labels()},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": spec.selector()}, "template": template},
    }  # fmt: skip


async def _until_gone(resource: Resource, name: str) -> None:
    for _ in range(100):
        try:
            await resource.get(name)
        except NotFound:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was not deleted")


class Crash(BaseException):
    """Stands for the process dying at this line (not an Exception: nothing catches it)."""


class CrashBeforeWorkloads:
    """A fault-injecting layer over the real apiserver: creating a StatefulSet kills us."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resource, name)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        raise Crash


async def test_a_crash_between_service_and_statefulset_converges_after_restart(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    await _network(sessions, tenant, "crashy")
    doomed = Reconciler(sessions, cluster, settings, InProcessBus())
    healthy = doomed.resources

    def crashing(namespace: str) -> tuple[Resource, Resource]:
        services, workloads = healthy(namespace)
        return services, CrashBeforeWorkloads(workloads)  # type: ignore[return-value]

    doomed.resources = crashing  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await doomed.reconcile_once()
    assert await _names(cluster) == {"Service/crashy-coordinator"}

    restarted = Reconciler(sessions, cluster, settings, InProcessBus())
    await restarted.reconcile_once()
    await restarted.reconcile_once()
    assert await _names(cluster) == {"Service/crashy-coordinator", "StatefulSet/crashy-coordinator"}


async def test_orphans_with_our_labels_are_removed(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    # Objects of a node whose row never committed (a crash before the commit).
    ghost = NodeObjects(
        network_id="ghost-net", node_id="ghost-node", network="ghost", node="coordinator",
        role=NodeRole.COORDINATOR, consensus=Consensus.RAFT, image="narayanprusty/qnm",
        service_type="ClusterIP", installation=reconciler.settings.instance,
    )  # fmt: skip
    await cluster.resource(SERVICES).create(ghost.service())
    await cluster.resource(STATEFULSETS).create(ghost.statefulset("10.96.9.9", None))
    await cluster.resource(DEPLOYMENTS).create(legacy_deployment(ghost, "10.96.9.8"))
    # The claim its StatefulSet made, or one left by a node whose row is gone.
    await eventually(lambda: _has(cluster, {"PersistentVolumeClaim/data-ghost-coordinator-0"}))
    everything = (SERVICES, STATEFULSETS, CLAIMS, DEPLOYMENTS)
    assert len(await _names(cluster, everything)) == 4
    await reconciler.reconcile_once()
    assert await _names(cluster, (SERVICES, STATEFULSETS, DEPLOYMENTS)) == set()
    # A claim in use by a pod is held by its protection finalizer until the pod is gone.
    assert await eventually(lambda: _no_claims(cluster))


async def test_an_object_with_our_name_that_is_not_ours_is_left_alone(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    squatter = {"metadata": {"name": "taken-coordinator"},
                "spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]}}  # fmt: skip
    await cluster.resource(SERVICES).create(squatter)
    await _network(sessions, tenant, "taken")
    await reconciler.reconcile_once()

    async with sessions() as session:
        node = await session.scalar(select(Node))
    assert node is not None
    assert node.status.value == "FAILED"
    assert "not this node's" in (node.status_reason or "")
    service = await cluster.resource(SERVICES).get("taken-coordinator")
    assert service["spec"]["selector"] == {"app": "other"}


async def test_network_delete_leaves_nothing_behind(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    network_id = await _network(sessions, tenant, "gone")
    await Writes(sessions).add_node(tenant.id, network_id, "peer-1")
    await reconciler.reconcile_once()
    everything = (SERVICES, STATEFULSETS, CLAIMS)
    # Each StatefulSet's controller makes its node's claim: data-<statefulset>-0.
    claims = {
        "PersistentVolumeClaim/data-gone-coordinator-0",
        "PersistentVolumeClaim/data-gone-peer-1-0",
    }
    assert await eventually(lambda: _has(cluster, claims))
    assert len(await _names(cluster, everything)) == 6

    deleted = await Writes(sessions).delete_network(tenant.id, network_id)
    assert deleted.operation is not None
    for _ in range(50):
        await reconciler.reconcile_once()
        async with sessions() as session:
            left = await session.scalar(select(func.count()).select_from(Network))
        if not left and not await _names(cluster, everything):
            break
        await asyncio.sleep(0.1)
    assert await _names(cluster, everything) == set()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Node)) == 0
        op = await session.get(Operation, deleted.operation.id)
    assert op is not None
    assert op.state is OperationState.SUCCEEDED


async def test_a_hand_edit_of_the_environment_is_undone(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    await _network(sessions, tenant, "edited")
    await reconciler.reconcile_once()
    deployments = cluster.resource(STATEFULSETS)
    wanted: dict[str, str] = {}

    async def edit_by_hand() -> bool | None:
        # The controllers update the object too: on a stale version, read it again and retry.
        live = await deployments.get("edited-coordinator")
        container = live["spec"]["template"]["spec"]["containers"][0]
        wanted.clear()
        wanted.update({e["name"]: e["value"] for e in container["env"]})
        # The IP trap, by hand; the spec-hash annotation still claims all is well.
        container["env"] = [
            {"name": e["name"], "value": "0.0.0.0" if e["name"] == "IP" else e["value"]}
            for e in container["env"]
        ]
        try:
            await deployments.replace("edited-coordinator", live)
        except Conflict:
            return None
        return True

    await eventually(edit_by_hand, every=0.05)
    edited = await deployments.get("edited-coordinator")
    edited_env = edited["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "IP", "value": "0.0.0.0"} in edited_env  # the edit is in the cluster
    assert wanted["IP"] != "0.0.0.0"

    async def repaired() -> dict[str, str] | None:
        # Level-triggered: a pass whose replace keeps meeting the rollout's own updates
        # (409) leaves it to the next pass, as the running loop would.
        await reconciler.reconcile_once()
        live = await deployments.get("edited-coordinator")
        env = {
            e["name"]: e["value"] for e in live["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return env if env == wanted else None

    assert await eventually(repaired) == wanted
