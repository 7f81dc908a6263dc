"""Two whole services on one PostgreSQL database and one sandbox: a mutation answered by the one
that only serves (the follower: it runs no control loop) wakes the leader's reconciler, which
makes the pod;
the serving one's subscriber sees the node's states the other observed. And which bus each
database gets."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import ConfigError, Settings, load_settings
from app.domain.enums import NodeStatus
from app.events.bus import InProcessBus
from app.events.pg_bus import PostgresBus
from app.server import create_app
from tests.api.queries import create_network
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient


async def test_a_mutation_on_one_replica_is_carried_out_by_the_other_and_seen_on_both(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("one replica on SQLite")
    # No timed passes: only a wake-up call starts one. Two replicas elect one leader.
    quiet = settings.model_copy(update={"resync_seconds": 600.0})
    apps = [create_app(quiet.model_copy(update={"leader_identity": name})) for name in "ab"]
    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
    ):
        leaders = [app for app in apps if app.state.startup.is_leader]
        assert len(leaders) == 1, "exactly one replica runs the control loop"
        (worker,) = leaders
        (server,) = [app for app in apps if app is not worker]  # serves, nothing else
        serving = server.state.startup.control
        assert serving.control is None
        working = worker.state.startup.control.control
        bus = server.state.deps.bus
        assert isinstance(bus, PostgresBus)
        await asyncio.wait_for(bus.connected.wait(), 10)
        await asyncio.wait_for(worker.state.deps.bus.connected.wait(), 10)
        passes = working.reconciler.network_passes
        async with (
            bus.subscribe(tenant_id=tenant.id) as mailbox,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=server),
                base_url="http://qaas.test",
                headers={"Authorization": f"Bearer {tenant.token}"},
            ) as http,
        ):
            await create_network(GraphQLClient(http), "relayed")
            statuses: list[NodeStatus] = []
            while not statuses or statuses[-1] is not NodeStatus.RUNNING:
                change = await asyncio.wait_for(mailbox.get(), 60)
                statuses.append(change.snapshot.status)
        # The wake-up call named the network: the leader's passes covered it alone.
        assert working.reconciler.network_passes > passes
        assert serving.control is None
        assert serving.terms == 0
        assert bus.reads >= 1  # what it delivered, it read: it wrote none of it


def test_each_database_gets_its_bus(settings: Settings, database_url: str) -> None:
    app = create_app(settings)
    expected = PostgresBus if database_url.startswith("postgresql") else InProcessBus
    assert type(app.state.deps.bus) is expected
    memory = create_app(settings.model_copy(update={"event_bus": "memory"}))
    assert type(memory.state.deps.bus) is InProcessBus


def test_the_postgres_bus_needs_postgresql() -> None:
    with pytest.raises(ConfigError, match="QAAS_EVENT_BUS=postgres needs a PostgreSQL"):
        load_settings(database_url="sqlite+aiosqlite:///x.db", event_bus="postgres")
