"""A settled cluster costs a constant amount per pass: a reconcile pass over N converged nodes
sends the same number of SQL statements whatever N is (1, 10, 50), writes none, and asks the
Kubernetes API for lists only (no create, replace or delete); a relist of the pod informer that
finds every pod as recorded writes nothing either, in a constant number of statements. And the
pass shares the event loop: it gives other tasks a turn between nodes once its slice is used up,
with the garbage collector paused until it ends (``_turns_during_a_pass``).

The control loop runs for real (reconciler, pod informer, observer) against the sandbox until
every node is RUNNING; then it is stopped and single passes and relists are counted.
"""

from __future__ import annotations

import asyncio
import gc

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import PODS, Cluster
from app.cluster.informer import Informer
from app.cluster.objects import NODE_ID, selector_for
from app.config import Settings
from app.control.loop import ControlLoop
from app.control.observer import PodObserver
from app.control.reconciler import Reconciler
from app.control.turns import Turns
from app.domain.enums import Consensus, NodeStatus
from app.events.bus import InProcessBus
from app.store.models import Network, Node
from tests.conftest import CallerTenant
from tests.control.counting import Counted, counting
from tests.helpers import Writes, eventually


async def _grow_to(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant, total: int
) -> None:
    """Node k is node k % 5 of network ``net-{k // 5}`` (its coordinator when k % 5 is 0),
    until the tenant has ``total`` nodes."""
    writes = Writes(sessions)
    async with sessions() as session:
        have = await session.scalar(select(func.count()).select_from(Node)) or 0
        ids: dict[str, str] = {
            name: id_ for name, id_ in await session.execute(select(Network.name, Network.id))
        }
    for k in range(have, total):
        name = f"net-{k // 5}"
        if k % 5 == 0:
            created = await writes.create_network(tenant.id, name, Consensus.RAFT)
            assert created.network is not None
            ids[name] = created.network.id
        else:
            await writes.add_node(tenant.id, ids[name], f"peer-{k % 5}")


async def _all_running(sessions: async_sessionmaker[AsyncSession], total: int) -> bool:
    async with sessions() as session:
        running = await session.scalar(
            select(func.count()).select_from(Node).where(Node.status == NodeStatus.RUNNING)
        )
    return running == total


async def _collector_during_a_pass(
    reconciler: Reconciler, only: set[str] | None = None
) -> set[bool]:
    """Whether the garbage collector was on, as another task saw it at each of its turns
    during one pass (over ``only`` those networks)."""
    collecting: set[bool] = set()

    async def other() -> None:
        while True:
            await asyncio.sleep(0)
            collecting.add(gc.isenabled())

    task = asyncio.create_task(other())
    await asyncio.sleep(0)  # it starts before the pass
    collecting.clear()
    try:
        await reconciler.reconcile_once(only)
    finally:
        task.cancel()
    return collecting


async def test_a_settled_pass_costs_the_same_whatever_n(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    seen: dict[int, Counted] = {}
    for total in (1, 10, 50):
        await _grow_to(sessions, tenant, total)
        # The whole control loop until every node runs; then single passes of its reconciler.
        reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
        loop = ControlLoop(reconciler)
        await loop.start()
        try:
            await eventually(lambda t=total: _all_running(sessions, t), within=120)  # type: ignore[misc]
        finally:
            await loop.stop()
        await reconciler.reconcile_once()  # anything the last observed changes asked for
        with counting(sessions, cluster) as counted:
            await reconciler.reconcile_once()
        seen[total] = counted
        assert counted.writes == [], f"N={total}: a settled pass wrote {counted.writes}"
        assert set(counted.calls) == {"list"}, f"N={total}: {counted.calls}"

    assert len(seen[1].statements) == len(seen[10].statements) == len(seen[50].statements), {
        n: c.statements for n, c in seen.items()
    }
    # Lists once per kind and namespace, whatever N is.
    assert seen[1].calls == seen[50].calls

    # With a slice of 0 the pass gives the loop a turn at every node at least (and others
    # between chunks of rows and of listed objects); the collector is off meanwhile.
    reconciler.turns = Turns(slice_seconds=0)
    collecting = await _collector_during_a_pass(reconciler)
    assert reconciler.turns.given >= 50, reconciler.turns.given
    assert collecting == {False}
    assert gc.isenabled()
    # A pass over kicked networks (they follow each other under a stream of mutations) runs
    # with the collector on: paused for each, its one collection between two walked seconds
    # of garbage at once.
    async with sessions() as session:
        some = set((await session.scalars(select(Node.network_id).limit(3))).all())
    assert await _collector_during_a_pass(reconciler, some) == {True}

    # The pod informer's relist (what a restart or a 410 Gone does) finds every pod as
    # recorded: nothing is written, in a constant number of statements.
    observer = PodObserver(reconciler.writer)
    informer = Informer(
        cluster.resource(PODS, tenant.namespace), selector_for(settings.instance), observer.handle,
        index_label=NODE_ID, on_relist=observer.prime,
    )  # fmt: skip
    observer.follow(informer)
    with counting(sessions, cluster) as relisted:
        await informer._relist()
    assert len(informer.cache) == 50
    assert relisted.writes == [], relisted.writes
    assert len(relisted.statements) <= 3, relisted.statements
