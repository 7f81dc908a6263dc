"""Leader election between replicas on one PostgreSQL database and one cluster (issue 15).

Two whole services (create_app, each with its own lifespan, Kubernetes client and database
pool) on the test's database and namespace: exactly one holds the Lease and runs the control
loop, mutations answered by either are carried out once, a lease taken away stops the leader's
writes, and the follower takes over a lease its holder stopped renewing. On SQLite (one
replica) there is no election. The fault-proxy cases (renewals failing, a write under way) are
in tests/faults/test_leader_fencing.py.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from starlette.applications import Starlette

from app.cluster.client import SERVICES, STATEFULSETS
from app.cluster.fence import Fenced
from app.cluster.objects import selector_for
from app.config import Settings
from app.server import create_app
from tests.api.queries import create_network
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient, eventually

LEASE = "qaas-control"
FAST = {"lease_seconds": 4.0, "lease_renew_deadline": 3.0, "lease_retry_period": 1.0}


def replica(settings: Settings, identity: str, **more: Any) -> Starlette:
    return create_app(settings.model_copy(update={"leader_identity": identity, **FAST, **more}))


@contextlib.asynccontextmanager
async def running(*apps: Starlette) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:  # in order: the first one started leads
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


@contextlib.asynccontextmanager
async def graphql(app: Starlette, tenant: CallerTenant) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qaas.test",
        headers={"Authorization": f"Bearer {tenant.token}"},
    ) as http:  # fmt: skip
        yield GraphQLClient(http)


async def lease(kube_api: client.ApiClient, namespace: str) -> dict[str, Any] | None:
    api = client.CoordinationV1Api(kube_api)
    try:
        found = await api.read_namespaced_lease(LEASE, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    result: dict[str, Any] = kube_api.sanitize_for_serialization(found)
    return result


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, within=within)


def leaders(*apps: Starlette) -> list[int]:
    return [i for i, app in enumerate(apps) if app.state.startup.is_leader]


async def _passes(loop: Any, more: int = 1) -> None:
    """Wait until ``loop``'s reconciler has made ``more`` more passes."""
    passes = loop.reconciler.passes
    await until(lambda: loop.reconciler.passes >= passes + more)


@pytest.fixture
def postgres(settings: Settings) -> Settings:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several replicas need PostgreSQL (SQLite: one replica, no election)")
    return settings


async def test_sqlite_runs_one_replica_without_a_lease(
    settings: Settings, tenant: CallerTenant, kube_api: client.ApiClient, namespace: str
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the SQLite default")
    app = create_app(settings)
    async with running(app):
        assert app.state.startup.is_leader
        assert app.state.control.reconciler.passes >= 0
        assert await lease(kube_api, namespace) is None


async def test_without_election_every_replica_reconciles(
    postgres: Settings, tenant: CallerTenant, kube_api: client.ApiClient, namespace: str
) -> None:
    """What issue 15 found (and QAAS_LEADER_ELECTION=off still does): two reconcilers."""
    first, second = (replica(postgres, name, leader_election="off") for name in ("a", "b"))
    async with running(first, second):
        for app in (first, second):
            await _passes(app.state.control)
        assert await lease(kube_api, namespace) is None


async def test_exactly_one_replica_leads_and_carries_out_what_either_was_asked(
    postgres: Settings, tenant: CallerTenant, kube_api: client.ApiClient, namespace: str
) -> None:
    first, second = replica(postgres, "replica-a"), replica(postgres, "replica-b")
    async with running(first, second):
        found = await lease(kube_api, namespace)
        assert found is not None
        assert found["spec"]["holderIdentity"] == "replica-a"
        assert leaders(first, second) == [0]
        assert not hasattr(second.state, "control"), "a follower never started a control loop"
        passes = first.state.control.reconciler.passes
        await until(lambda: first.state.control.reconciler.passes > passes + 1)
        # A mutation answered by either replica: the leader carries it out, once.
        async with graphql(second, tenant) as follower, graphql(first, tenant) as leader:
            await create_network(follower, "from-follower")
            await create_network(leader, "from-leader")
        cluster = first.state.startup.cluster
        selector = selector_for(postgres.instance)

        async def made() -> dict[str, str] | None:
            items, _ = await cluster.resource(STATEFULSETS, namespace).list(selector)
            names = {i["metadata"]["name"]: i["metadata"]["uid"] for i in items}
            return names if len(names) == 2 else None

        objects = await eventually(made, within=30)
        assert set(objects) == {"from-follower-coordinator", "from-leader-coordinator"}
        services, _ = await cluster.resource(SERVICES, namespace).list(selector)
        assert len(services) == 2
        # More passes change nothing: no duplicate, nothing deleted as an orphan and remade.
        passes = first.state.control.reconciler.passes
        await until(lambda: first.state.control.reconciler.passes > passes + 3)
        assert await made() == objects
        assert leaders(first, second) == [0]
        assert not hasattr(second.state, "control")


async def test_a_leader_whose_lease_is_taken_stops_writing_and_another_takes_over(
    postgres: Settings, tenant: CallerTenant, kube_api: client.ApiClient, namespace: str
) -> None:
    first, second = replica(postgres, "replica-a"), replica(postgres, "replica-b")
    async with running(first, second):
        assert leaders(first, second) == [0]
        old_loop = first.state.control
        cluster = first.state.startup.cluster
        # Someone else's renewal lands (as if A's renewals had been lost in the network).
        api = client.CoordinationV1Api(kube_api)
        taken = await api.read_namespaced_lease(LEASE, namespace)
        taken.spec.holder_identity = "thief"
        taken.spec.renew_time = datetime.datetime.now(datetime.UTC)
        await api.replace_namespaced_lease(LEASE, namespace, taken)
        # A finds out at its next renewal, well within the thief's lease, and stops.
        await until(lambda: leaders(first, second) == [], within=FAST["lease_retry_period"] * 3)
        assert first.state.startup.control.control is None, "A's control loop is stopped"
        with pytest.raises(Fenced):
            await cluster.resource(SERVICES, namespace).create(
                {"metadata": {"name": "late-write"}, "spec": {"ports": [{"port": 80}]}}
            )
        with pytest.raises(Fenced):
            async with old_loop.reconciler.writer.unit():
                pass
        # The thief never renews: after a lease duration one of the replicas takes it back.
        await until(lambda: len(leaders(first, second)) == 1, within=FAST["lease_seconds"] * 3)
        found = await lease(kube_api, namespace)
        assert found is not None
        assert found["spec"]["holderIdentity"] in ("replica-a", "replica-b")
        assert found["spec"]["leaseTransitions"] == 1  # the take back from the thief
        (leader,) = leaders(first, second)
        loop = (first, second)[leader].state.control
        assert loop is not old_loop  # a new term, a new loop
        passes = loop.reconciler.passes
        await until(lambda: loop.reconciler.passes > passes)


async def test_stopping_the_leader_hands_the_lease_over_at_once(
    postgres: Settings, tenant: CallerTenant, kube_api: client.ApiClient, namespace: str
) -> None:
    first, second = replica(postgres, "replica-a"), replica(postgres, "replica-b")
    async with contextlib.AsyncExitStack() as first_running, running():
        await first_running.enter_async_context(first.router.lifespan_context(first))
        async with running(second):
            assert leaders(first, second) == [0]
            await first_running.aclose()  # A stops: its loop first, then it releases the lease
            # Not a lease duration: B takes a released lease at its next try.
            await until(lambda: leaders(second) == [0], within=FAST["lease_retry_period"] * 3)
            found = await lease(kube_api, namespace)
            assert found is not None
            assert found["spec"]["holderIdentity"] == "replica-b"
