"""A pass skips a node it found settled while nothing it depends on changed
(app/control/settled.py), yet drift is still repaired through that shortcut: a StatefulSet
edited behind QaaS's back (a new resourceVersion) and a row whose status was changed by hand.

The control loop runs for real against the sandbox until both nodes are RUNNING; then it is
stopped and single passes are made."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import STATEFULSETS, Cluster
from app.config import Settings
from app.control.loop import ControlLoop
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, NodeStatus
from app.events.bus import InProcessBus
from app.store.models import Node
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually


async def _running(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        count = select(func.count()).select_from(Node).where(Node.status == NodeStatus.RUNNING)
        return await session.scalar(count) == 2


async def _skipping_both(reconciler: Reconciler) -> bool:
    await reconciler.reconcile_once()
    return reconciler.settled.skipped == 2


async def _status(sessions: async_sessionmaker[AsyncSession], name: str) -> NodeStatus:
    async with sessions() as session:
        status = await session.scalar(select(Node.status).where(Node.name == name))
    assert status is not None
    return status


async def test_drift_is_repaired_through_the_settled_shortcut(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    writes = Writes(sessions)
    created = await writes.create_network(tenant.id, "memo", Consensus.RAFT)
    assert created.network is not None
    await writes.add_node(tenant.id, created.network.id, "peer-1")
    reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
    loop = ControlLoop(reconciler)
    await loop.start()
    try:
        await eventually(lambda: _running(sessions), within=120)
    finally:
        await loop.stop()
    # Both settled, both skipped: the shortcut is on (once the controllers stopped writing
    # the StatefulSets' status: each write gives them a new resourceVersion).
    await eventually(lambda: _skipping_both(reconciler), within=60)

    # A StatefulSet edited behind QaaS's back is compared again, and repaired.
    workloads = cluster.resource(STATEFULSETS)
    live = await workloads.get("memo-peer-1")
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "example.invalid/drifted:1"
    await workloads.replace("memo-peer-1", live)
    await reconciler.reconcile_once()
    repaired = await workloads.get("memo-peer-1")
    assert repaired["spec"]["template"]["spec"]["containers"][0]["image"] == settings.node_image
    assert reconciler.settled.skipped <= 1  # the edited one was compared

    # So is a row whose status disagrees with its facts (changed by hand), once skipped.
    await eventually(lambda: _skipping_both(reconciler), within=60)
    async with sessions.begin() as session:
        await session.execute(
            update(Node).where(Node.name == "coordinator").values(status=NodeStatus.FAILED)
        )
    await reconciler.reconcile_once()
    assert await _status(sessions, "coordinator") is NodeStatus.RUNNING
