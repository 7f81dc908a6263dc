"""A mutation's kick names its network, and the pass it asks for covers that network only
(app/control/schedule.py): it lists that network's objects, converges its nodes, and leaves
the rest (other networks, orphans, what is remembered as settled) to the full pass, which
still runs on its period and on a kick that names no network.

Against the sandbox's apiserver, with the reconciler driven pass by pass or run for real."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import SERVICES, STATEFULSETS, Cluster
from app.cluster.errors import KubeError
from app.cluster.objects import NETWORK_ID, NODE_ID, selector_for
from app.config import Settings
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, Role
from app.events.bus import InProcessBus
from app.services.tenancy import create_token
from app.store.models import Node
from tests.conftest import CallerTenant
from tests.control.counting import counting
from tests.helpers import Writes, eventually, holds


async def _network(writes: Writes, tenant: CallerTenant, name: str, peers: int = 0) -> str:
    created = await writes.create_network(tenant.id, name, Consensus.RAFT)
    assert created.network is not None
    for k in range(peers):
        await writes.add_node(tenant.id, created.network.id, f"peer-{k}")
    return created.network.id


async def _orphan(cluster: Cluster, namespace: str, settings: Settings) -> None:
    """A Service with our labels whose node has no row (what a crash before a commit leaves)."""
    labels = dict(label.split("=") for label in selector_for(settings.instance).split(","))
    labels |= {NODE_ID: "no-such-node", NETWORK_ID: "no-such-network"}
    await cluster.resource(SERVICES, namespace).create({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "orphan", "labels": labels},
        "spec": {"ports": [{"port": 8545}]},
    })  # fmt: skip


async def _names(cluster: Cluster, namespace: str, kind: Any) -> set[str]:
    items, _ = await cluster.resource(kind, namespace).list()
    return {item["metadata"]["name"] for item in items}


async def test_a_pass_over_one_network_lists_and_converges_that_network_only(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    writes = Writes(sessions)
    for k in range(3):
        await _network(writes, tenant, f"old-{k}", peers=1)
    reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
    await reconciler.reconcile_once()
    await reconciler.reconcile_once()  # peers, once their coordinator has its address
    assert len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 6
    await _orphan(cluster, tenant.namespace, settings)

    new = await _network(writes, tenant, "new", peers=1)
    with counting(sessions, cluster) as counted:
        await reconciler.reconcile_once({new})
    # Four lists (Services, StatefulSets, claims, Deployments) by the network's label: none
    # of the 6 Services and StatefulSets of the other networks, nor the orphan, came back.
    assert counted.listed == [0, 0, 0, 0]
    assert reconciler.network_passes == 1
    assert reconciler.passes == 2
    async with sessions() as session:
        new_nodes = {n.name: n for n in await session.scalars(
            select(Node).where(Node.network_id == new))}  # fmt: skip
    assert new_nodes["coordinator"].has_service
    assert new_nodes["coordinator"].has_deployment
    await reconciler.reconcile_once({new})
    async with sessions() as session:
        peer = await session.scalar(select(Node).where(Node.network_id == new,
                                                      Node.name == "peer-0"))  # fmt: skip
    assert peer is not None
    assert peer.has_deployment
    assert len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 8
    assert "orphan" in await _names(cluster, tenant.namespace, SERVICES)  # not this pass's

    await reconciler.reconcile_once()  # a full pass: orphans are its work
    assert "orphan" not in await _names(cluster, tenant.namespace, SERVICES)
    assert reconciler.passes == 3


async def test_a_network_pass_deletes_what_the_network_marked_absent(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    writes = Writes(sessions)
    kept, gone = await _network(writes, tenant, "kept"), await _network(writes, tenant, "gone")
    reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
    await reconciler.reconcile_once()
    assert len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 2
    await writes.delete_network(tenant.id, gone)

    async def network_gone() -> bool:
        await reconciler.reconcile_once({gone})
        async with sessions() as session:
            return await session.scalar(select(Node.id).where(Node.network_id == gone)) is None

    await eventually(network_gone, within=60)
    assert reconciler.passes == 1  # network passes alone did it
    services = await _names(cluster, tenant.namespace, SERVICES)
    assert len(services) == 1
    assert len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 1
    async with sessions() as session:
        assert await session.scalar(select(Node.id).where(Node.network_id == kept)) is not None


async def test_the_loop_runs_a_network_pass_for_a_named_kick_and_a_full_one_otherwise(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    writes = Writes(sessions)
    await _network(writes, tenant, "first")
    # A period far longer than the test: every pass after the first is a kick's.
    reconciler = Reconciler(sessions, cluster, settings.model_copy(update={"resync_seconds": 3600}),
                            InProcessBus())  # fmt: skip
    running = asyncio.create_task(reconciler.run())
    try:
        await holds(lambda: reconciler.passes == 1)
        second = await _network(writes, tenant, "second")
        reconciler.kick(second)

        async def made() -> bool:
            return len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 2

        await eventually(made)
        await holds(lambda: reconciler.network_passes >= 1)  # counted when the pass ends
        assert reconciler.passes == 1
        reconciler.kick()
        await holds(lambda: reconciler.passes == 2)
    finally:
        reconciler.stop()
        await running


class _Broken(Reconciler):
    """The real reconciler, with every pass failing for the tenant named ``broken`` (a fault
    injected in front of its namespace) while ``broken`` is set."""

    broken = True

    async def _reconcile_namespace(self, tenant: Any, *args: Any) -> None:
        if self.broken and tenant.name == "broken":
            raise KubeError("injected: the namespace cannot be served")
        await super()._reconcile_namespace(tenant, *args)


async def test_only_a_full_pass_says_that_a_failing_tenant_is_well_again(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    writes = Writes(sessions)
    broken, _, _ = await create_token(sessions, "broken", Role.ADMIN, settings)
    await writes.create_network(broken.id, "theirs", Consensus.RAFT)
    reconciler = _Broken(sessions, cluster, settings.model_copy(update={"resync_seconds": 3600}),
                         InProcessBus())  # fmt: skip
    running = asyncio.create_task(reconciler.run())
    try:
        await holds(lambda: reconciler.failing_since is not None)
        failing_since = reconciler.failing_since
        ours = await _network(writes, tenant, "ours")
        reconciler.kick(ours)  # a pass over another tenant's network succeeds...

        async def made() -> bool:
            return len(await _names(cluster, tenant.namespace, STATEFULSETS)) == 1

        await eventually(made)
        await holds(lambda: reconciler.network_passes >= 1)
        assert reconciler.failing_since == failing_since  # ...and says nothing of the other
        reconciler.broken = False
        reconciler.kick()
        await holds(lambda: reconciler.failing_since is None)
    finally:
        reconciler.stop()
        await running
