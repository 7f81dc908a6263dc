"""The cluster client through the fault proxy: what is retried (and what is not), Retry-After,
the bounded number of attempts, the shared rate budget and the per-request timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.cluster.client import PODS, SERVICES, Cluster
from app.cluster.connect import ClusterTarget, connect
from app.cluster.errors import ClusterUnavailable, Gone, KubeError, TooManyRequests
from app.config import load_settings
from tests.faults.proxy import FaultProxy, Rule

MakeCluster = Callable[..., Awaitable[Cluster]]
POST = frozenset({"POST"})


@pytest.fixture
async def make_cluster(proxy_kubeconfig: Path, namespace: str) -> AsyncIterator[MakeCluster]:
    """Clusters reaching the sandbox through the proxy, with ``QAAS_KUBE_*`` settings given as
    keywords (quick backoff unless said otherwise)."""
    made: list[Cluster] = []

    async def make(kubeconfig: Path = proxy_kubeconfig, **kube: Any) -> Cluster:
        kube.setdefault("kube_backoff_seconds", 0.05)
        settings = load_settings(**kube)
        cluster = await connect(
            ClusterTarget("kubeconfig", kubeconfig), namespace, settings=settings
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


async def test_a_503_with_retry_after_is_retried_until_it_passes(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=4)
    fault_proxy.rules = [Rule("status", 1.0, status=503, retry_after=0.3, times=2)]
    items, _ = await cluster.resource(SERVICES).list()
    assert items == []
    assert fault_proxy.injected == {"status:503": 2}
    assert cluster.stats.retries == {"503": 2}
    assert cluster.stats.backoff_seconds >= 2 * 0.3  # the server's Retry-After, honoured
    assert cluster.stats.requests == 3

    # A create refused with 503 never reached the apiserver's storage: retried too.
    fault_proxy.rules = [Rule("status", 1.0, status=503, methods=POST, times=1)]
    created = await cluster.resource(SERVICES).create(_service("web"))
    assert created["metadata"]["name"] == "web"
    assert cluster.stats.retries == {"503": 3}


async def test_a_429_storm_is_bounded_and_surfaces_as_too_many_requests(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=3, kube_retry_after_max=0.1)
    fault_proxy.rules = [Rule("status", 1.0, status=429, retry_after=3600)]
    with pytest.raises(TooManyRequests):
        await cluster.resource(SERVICES).get("web")
    assert fault_proxy.injected == {"status:429": 4}  # one attempt and three retries
    assert cluster.stats.retries == {"429": 3}
    assert cluster.stats.gave_up == 1
    assert cluster.stats.backoff_seconds < 3 * 0.2  # an hour's Retry-After, capped


async def test_a_create_that_got_a_500_is_not_retried_but_a_read_is(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=4)
    services = cluster.resource(SERVICES)
    fault_proxy.rules = [Rule("status", 1.0, status=500, methods=POST)]
    with pytest.raises(KubeError) as failed:
        await services.create(_service("web"))
    assert failed.value.status == 500
    assert fault_proxy.injected == {"status:500": 1}  # it may have happened: not repeated
    assert cluster.stats.total_retries == 0
    assert cluster.stats.not_retried == 1

    fault_proxy.rules = [Rule("status", 1.0, status=500, times=1)]
    await services.list()
    assert cluster.stats.retries == {"500": 1}


async def test_a_timeout_fails_the_call_with_cluster_unavailable_instead_of_hanging(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=2, kube_timeout_seconds=0.5)
    fault_proxy.rules = [Rule("timeout", 1.0, delay=60)]
    async with asyncio.timeout(20):  # a guard: the call itself must give up much sooner
        with pytest.raises(ClusterUnavailable) as read:
            await cluster.resource(SERVICES).get("web")
        assert read.value.cause == "timeout"
        assert fault_proxy.injected == {"timeout": 3}  # a read is repeated
        assert cluster.stats.retries == {"timeout": 2}

        with pytest.raises(ClusterUnavailable):
            await cluster.resource(SERVICES).create(_service("web"))
    assert fault_proxy.injected == {"timeout": 4}  # a create that may have happened is not
    assert cluster.stats.not_retried == 1


async def test_a_refused_connection_is_retried_even_for_a_create(
    fault_proxy: FaultProxy, make_cluster: MakeCluster, sandbox_token: str, tmp_path: Path
) -> None:
    closed = FaultProxy(fault_proxy.upstream, fault_proxy.ca_file)
    await closed.start()
    kubeconfig = closed.kubeconfig(tmp_path / "kubeconfig-closed", sandbox_token)
    await closed.stop()  # nothing listens on its port any more
    cluster = await make_cluster(kubeconfig, kube_retries=2)
    with pytest.raises(ClusterUnavailable) as refused:
        await cluster.resource(SERVICES).create(_service("web"))
    assert refused.value.cause == "connect"  # nothing was sent: safe to repeat
    assert cluster.stats.retries == {"connect": 2}


async def test_the_rate_budget_spreads_a_burst_of_calls(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    qps, burst, calls = 2.0, 3, 7
    cluster = await make_cluster(kube_qps=qps, kube_burst=burst)
    services = cluster.resource(SERVICES)
    await asyncio.gather(*(services.list() for _ in range(calls)))
    stats = cluster.stats
    assert stats.requests == calls
    assert stats.throttled == calls - burst  # the burst goes at once, the rest waits its turn
    # The k-th call past the burst waits k/qps: 0.5 + 1 + 1.5 + 2 seconds in all, so the last of
    # the 7 calls starts two seconds after the first. (Less if the calls took their tokens
    # later than all at once, on a busy machine: never more.)
    expected = sum(k / qps for k in range(1, calls - burst + 1))
    assert expected - 0.5 <= stats.throttle_seconds <= expected + 0.01
    assert fault_proxy.forwarded == calls


async def test_retries_take_their_turn_in_the_rate_budget(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_qps=2, kube_burst=1, kube_retries=3)
    fault_proxy.rules = [Rule("status", 1.0, status=503, retry_after=0)]
    with pytest.raises(KubeError):
        await cluster.resource(SERVICES).list()
    # Four attempts with no backoff to speak of: each one after the first waits for a token.
    assert cluster.stats.requests == 4
    assert cluster.stats.throttled == 3


async def test_watches_relist_on_410_reopen_after_503_and_notice_a_cut(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=2)
    pods = cluster.resource(PODS)
    _, version = await pods.list()
    for index in range(4):
        await pods.create(_pod(f"p{index}"))

    fault_proxy.rules = [Rule("gone", 1.0, watch=True)]
    with pytest.raises(Gone):
        await _events(pods.watch(version, timeout_seconds=5))

    fault_proxy.rules = [Rule("status", 1.0, status=503, watch=True, times=1)]
    seen = await _events(pods.watch(version, timeout_seconds=1))
    assert [name for kind, name in seen if kind == "ADDED"] == ["p0", "p1", "p2", "p3"]
    assert cluster.stats.retries == {"503": 1}

    fault_proxy.rules = [Rule("cut", 1.0, after_events=2)]
    partial: list[tuple[str, str]] = []
    with pytest.raises(ClusterUnavailable):
        await _events(pods.watch(version, timeout_seconds=30), partial)
    assert partial == seen[:2]  # the same history from the same version, cut after two


async def test_a_watch_that_never_answers_is_given_up(
    fault_proxy: FaultProxy, make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(kube_retries=1, kube_timeout_seconds=0.5)
    pods = cluster.resource(PODS)
    _, version = await pods.list()
    fault_proxy.rules = [Rule("timeout", 1.0, delay=60, watch=True)]
    async with asyncio.timeout(20):
        with pytest.raises(ClusterUnavailable):
            await _events(pods.watch(version, timeout_seconds=300))
    assert fault_proxy.injected == {"timeout": 2}


async def _events(
    stream: AsyncIterator[tuple[str, dict[str, Any]]], into: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    seen = [] if into is None else into
    async for kind, obj in stream:
        seen.append((kind, obj["metadata"]["name"]))
    return seen
