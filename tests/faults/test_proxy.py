"""The fault proxy forwards faithfully and each kind of fault really happens, as seen by the
kubernetes-asyncio client (or a bare HTTP client for what happens on the wire)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.faults.proxy import FaultProxy, Rule


@pytest.fixture
async def api(proxy_kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio client whose kubeconfig names the proxy."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(proxy_kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def raw(fault_proxy: FaultProxy, sandbox_token: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A bare HTTP client to the proxy, with the token: to see the wire."""
    async with aiohttp.ClientSession(
        base_url=fault_proxy.url, headers={"Authorization": f"Bearer {sandbox_token}"}
    ) as session:
        yield session


SELECTOR = "qaas.dev/proxy-test=yes"  # not the namespace's own kube-root-ca.crt


def _config_map(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"qaas.dev/proxy-test": "yes"}},
        "data": {"k": "v"},
    }


async def _watch_events(core: Any, namespace: str, version: str) -> list[Any]:
    async with watch.Watch() as stream:
        return [
            event
            async for event in stream.stream(
                core.list_namespaced_config_map, namespace, resource_version=version,
                timeout_seconds=5,
            )
        ]  # fmt: skip


async def _read_stream(
    raw: aiohttp.ClientSession, path: str, params: dict[str, str], events: list[Any]
) -> None:
    async with raw.get(path, params=params) as response:
        while line := await response.content.readline():
            events.append(json.loads(line))


async def test_requests_and_answers_pass_through_unchanged(
    fault_proxy: FaultProxy, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(namespace, _config_map("plain"))
    read = await core.read_namespaced_config_map("plain", namespace)
    assert read.data == {"k": "v"}
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("absent", namespace)
    assert missing.value.status == 404  # the apiserver's own answer, through the proxy
    assert fault_proxy.forwarded == 3
    assert not fault_proxy.injected


async def test_status_503_carries_retry_after_and_a_status_object(
    fault_proxy: FaultProxy, api: client.ApiClient, namespace: str
) -> None:
    fault_proxy.rules = [Rule("status", 1.0, status=503, retry_after=2)]
    with pytest.raises(ApiException) as refused:
        await client.CoreV1Api(api).read_namespace(namespace)
    error: Any = refused.value
    assert error.status == 503
    assert error.headers["Retry-After"] == "2"
    status = json.loads(error.body)
    assert (status["kind"], status["code"], status["reason"]) == (
        "Status",
        503,
        "ServiceUnavailable",
    )
    assert fault_proxy.injected == {"status:503": 1}
    assert fault_proxy.forwarded == 0  # the apiserver never saw it


async def test_rules_match_by_method_path_and_watch_and_fire_a_bounded_number_of_times(
    fault_proxy: FaultProxy, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    fault_proxy.rules = [
        Rule("status", 1.0, status=429, methods=frozenset({"POST"}), path="/configmaps$"),
        Rule("status", 1.0, status=500, watch=True),
        Rule("status", 1.0, status=503, path="/configmaps/", times=2),
    ]
    with pytest.raises(ApiException) as throttled:
        await core.create_namespaced_config_map(namespace, _config_map("c"))
    assert throttled.value.status == 429
    await core.list_namespaced_config_map(namespace)  # GET: no rule matches
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            await core.read_namespaced_config_map("c", namespace)
        assert unavailable.value.status == 503
    with pytest.raises(ApiException) as missing:  # the third read reaches the apiserver
        await core.read_namespaced_config_map("c", namespace)
    assert missing.value.status == 404
    assert fault_proxy.injected == {"status:429": 1, "status:503": 2}


async def test_a_watch_gets_410_gone_as_the_apiserver_sends_it(
    fault_proxy: FaultProxy, api: client.ApiClient, raw: aiohttp.ClientSession, namespace: str
) -> None:
    fault_proxy.rules = [Rule("gone", 1.0, watch=True)]
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    async with raw.get(path, params={"watch": "true", "resourceVersion": "7"}) as response:
        assert response.status == 200  # an error inside a watch stream, not an HTTP error
        lines = (await response.read()).splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith("too old resource version: 7")

    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as gone:  # what the client library makes of it
        await _watch_events(core, namespace, "7")
    assert gone.value.status == 410
    listing = await core.list_namespaced_config_map(namespace, label_selector=SELECTOR)
    assert listing.items == []
    assert fault_proxy.injected["gone"] == 2


async def test_a_cut_watch_stream_ends_early(
    fault_proxy: FaultProxy, api: client.ApiClient, raw: aiohttp.ClientSession, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map(namespace, label_selector=SELECTOR)
    start = listed.metadata.resource_version
    for index in range(5):
        await core.create_namespaced_config_map(namespace, _config_map(f"c{index}"))
    fault_proxy.rules = [Rule("cut", 1.0, after_events=2)]
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    params = {
        "watch": "true",
        "resourceVersion": start,
        "timeoutSeconds": "30",
        "labelSelector": SELECTOR,
    }
    events: list[Any] = []
    began = time.monotonic()
    with pytest.raises(aiohttp.ClientPayloadError):  # the connection drops mid-stream
        await _read_stream(raw, path, params, events)
    assert [e["object"]["metadata"]["name"] for e in events] == ["c0", "c1"]
    assert time.monotonic() - began < 10  # long before the server's own 30 s timeout
    assert fault_proxy.injected["cut"] == 1

    fault_proxy.rules = []  # without the rule, the same watch delivers all five
    params["timeoutSeconds"] = "1"
    async with raw.get(path, params=params) as response:
        assert len((await response.read()).splitlines()) == 5


async def test_latency_delays_the_answer(
    fault_proxy: FaultProxy, api: client.ApiClient, namespace: str
) -> None:
    fault_proxy.rules = [Rule("latency", 1.0, delay=0.6)]
    began = time.monotonic()
    await client.CoreV1Api(api).read_namespace(namespace)
    assert time.monotonic() - began >= 0.6
    assert fault_proxy.injected == {"latency": 1}
    assert fault_proxy.forwarded == 1  # delayed, then forwarded


async def test_timeout_holds_the_request_then_drops_it_unanswered(
    fault_proxy: FaultProxy, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    fault_proxy.rules = [Rule("timeout", 1.0, delay=0.5)]
    began = time.monotonic()
    with pytest.raises(aiohttp.ServerDisconnectedError):  # (a POST: aiohttp repeats a GET once)
        await core.create_namespaced_config_map(namespace, _config_map("held"))
    assert time.monotonic() - began >= 0.5

    fault_proxy.rules = [Rule("timeout", 1.0, delay=60)]
    with pytest.raises(asyncio.TimeoutError):  # a client with a timeout gives up first
        await core.read_namespace(namespace, _request_timeout=0.5)
    assert fault_proxy.injected == {"timeout": 2}
    assert fault_proxy.forwarded == 0
    fault_proxy.rules = []
    listing = await core.list_namespaced_config_map(namespace, label_selector=SELECTOR)
    assert listing.items == []  # the held create never reached the apiserver


async def test_the_same_seed_draws_the_same_faults(
    fault_proxy: FaultProxy, sandbox_token: str
) -> None:
    async def statuses(proxy: FaultProxy) -> list[int]:
        proxy.rules = [Rule("status", 0.5, status=500)]
        headers = {"Authorization": f"Bearer {sandbox_token}"}
        async with aiohttp.ClientSession(base_url=proxy.url, headers=headers) as session:
            seen = []
            for _ in range(20):
                async with session.get("/version") as response:
                    seen.append(response.status)
            return seen

    other = FaultProxy(fault_proxy.upstream, fault_proxy.ca_file, seed=1)
    await other.start()
    try:
        first, second = await statuses(fault_proxy), await statuses(other)
    finally:
        await other.stop()
    assert first == second
    assert set(first) == {200, 500}
