"""A leader that cannot renew its lease stops writing before another replica may lead.

Replica A reaches the API server through the fault proxy, replica B directly; both run on the
test's PostgreSQL database and namespace. The proxy then drops A's lease requests: A's fence
closes (and its control loop stops) before B can take the lease, and a write A had under way
(held by the proxy) is cut and never reaches the API server.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import SERVICES
from app.cluster.fence import Fenced
from app.config import Settings
from tests.control.test_leadership import FAST, leaders, replica, running, until
from tests.faults.proxy import FaultProxy, Rule


@pytest.mark.timeout(90)
async def test_a_leader_that_cannot_renew_stops_writing_before_another_leads(
    settings: Settings,
    fault_proxy: FaultProxy,
    proxy_kubeconfig: Path,
    kube_api: client.ApiClient,
    namespace: str,
    sessions: async_sessionmaker[AsyncSession],  # empties the database: no earlier test's tenant
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several replicas need PostgreSQL")
    first = replica(settings, "replica-a", kubeconfig=str(proxy_kubeconfig))
    second = replica(settings, "replica-b")
    async with running(first, second):
        assert leaders(first, second) == [0]
        fence = first.state.startup.control.elector.fence
        cluster = first.state.startup.cluster
        # A write under way when the lease is lost: the proxy holds it for a while.
        fault_proxy.rules = [
            Rule("latency", 1.0, methods=frozenset({"POST"}), path="/services", delay=3.0),
            Rule("timeout", 1.0, path="/leases/", delay=60.0),  # renewals never answer
        ]
        service = {"metadata": {"name": "late-write"}, "spec": {"ports": [{"port": 80}]}}
        write = asyncio.create_task(cluster.resource(SERVICES, namespace).create(service))
        last_cut = 0.0
        b_fence = None
        while not leaders(second):  # B leads only once A's lease has expired
            last_cut = fence.cut_at or last_cut
            if fence.cut_at == 0.0:
                assert first.state.startup.control.control is None or not fence.open
            await asyncio.sleep(0.02)
            assert time.monotonic() < (last_cut or time.monotonic()) + 30, "B never took over"
        b_fence = second.state.startup.control.elector.fence
        b_began = b_fence.closes_at - FAST["lease_renew_deadline"]
        # A's last moment to write was before B's winning attempt even began.
        assert 0 < last_cut < b_began
        assert leaders(first, second) == [1]
        assert first.state.startup.control.control is None
        with pytest.raises(Fenced, match="cut"):
            await write
        with pytest.raises(Fenced):
            await cluster.resource(SERVICES, namespace).create(service)
        # B's passes run after the proxy's hold is over: the cut write never landed.
        loop = second.state.control
        passes = loop.reconciler.passes
        await until(lambda: loop.reconciler.passes > passes + 1)
        names = [s.metadata.name for s in (await client.CoreV1Api(kube_api)
                                           .list_namespaced_service(namespace)).items]  # fmt: skip
        assert "late-write" not in names
        assert fault_proxy.injected["latency"] == 1
