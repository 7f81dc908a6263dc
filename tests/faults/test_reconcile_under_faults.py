"""The whole service converges through an unreliable apiserver: 500s, 503s and 429s, latency,
expired and cut watches. A network with two peers comes up (every node RUNNING, the objects in
the namespace exactly the desired ones), then its deletion leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from app.config import Settings, load_settings
from tests.faults.proxy import FaultProxy, Rule
from tests.helpers import GraphQLClient, eventually

MANAGED = "app.kubernetes.io/managed-by=qaas"
# About one request in five fails with a 500, 503 or 429. The first pod watch is sure to expire
# and the next two to be cut (there are plenty of pod events while nodes start), so that every
# run goes through each path; later ones are left to chance.
FAULTS = [
    Rule("status", 0.1, status=500),
    Rule("status", 0.05, status=503, retry_after=0.2),
    Rule("status", 0.05, status=429, retry_after=0.2),
    Rule("gone", 1.0, watch=True, times=1),
    Rule("gone", 0.2, watch=True),
    Rule("latency", 0.3, delay=0.1),
    Rule("cut", 1.0, after_events=2, times=2),
    Rule("cut", 0.5, after_events=3),
]
CREATE = """
mutation($name: String!) { networkCreate(input: {name: $name, consensus: RAFT}) {
  network { id } userErrors { code message } } }
"""
ADD = """
mutation($id: ID!, $name: String!) { nodeAdd(input: {networkId: $id, name: $name}) {
  node { id } userErrors { code message } } }
"""
DELETE = "mutation($id: ID!) { networkDelete(input: {id: $id}) { userErrors { code message } } }"
NODES = """
query($id: ID!) { network(id: $id) { status nodes { edges { node {
  name status statusReason ip statusHistory { status reason } } } } } }
"""


@pytest.fixture
def proxy_kubeconfig(fault_proxy: FaultProxy, sandbox_token: str, tmp_path: Path) -> Path:
    """The faults are on before the service starts: its first list and watch meet them too."""
    fault_proxy.rules = list(FAULTS)
    return fault_proxy.kubeconfig(tmp_path / "kubeconfig-proxy", sandbox_token)


@pytest.fixture
def settings(database_url: str, proxy_kubeconfig: Path, namespace: str) -> Settings:
    """The test service's settings, its cluster reached through the fault proxy."""
    return load_settings(
        database_url=database_url,
        kubeconfig=str(proxy_kubeconfig),
        cluster="kubeconfig",
        namespace=namespace,
        resync_seconds=0.5,
        node_start_deadline=120,
        kube_backoff_seconds=0.05,
        kube_timeout_seconds=5,
        chain_probe="off",  # simulated pods: no chain answers
    )


async def _objects(kube_api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """Every object QaaS manages in the namespace, as "Kind/name", read past the proxy."""
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    found: dict[str, dict[str, Any]] = {}
    for kind, list_call in (
        ("Service", core.list_namespaced_service),
        ("StatefulSet", apps.list_namespaced_stateful_set),
        ("Pod", core.list_namespaced_pod),
        ("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim),
    ):
        listed = await list_call(namespace, label_selector=MANAGED, _preload_content=False)
        for item in (await listed.json())["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = item
    return found


def _env(workload: dict[str, Any]) -> dict[str, str]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


async def test_a_network_converges_and_goes_away_through_faults(
    api: GraphQLClient,
    app: Any,
    fault_proxy: FaultProxy,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    created = (await api.data(CREATE, name="storm"))["networkCreate"]
    assert created["userErrors"] == []
    network_id = created["network"]["id"]
    for peer in ("peer-1", "peer-2"):
        added = (await api.data(ADD, id=network_id, name=peer))["nodeAdd"]
        assert added["userErrors"] == []
    names = ["storm-coordinator", "storm-peer-1", "storm-peer-2"]

    async def all_running() -> dict[str, Any] | None:
        network = (await api.data(NODES, id=network_id))["network"]
        nodes = [edge["node"] for edge in network["nodes"]["edges"]]
        running = len(nodes) == 3 and all(n["status"] == "RUNNING" for n in nodes)
        # The network's aggregate is read by its own query: it may trail its nodes by a read.
        return network if running and network["status"] == "RUNNING" else None

    network = await eventually(all_running, within=120, every=0.5)
    for node in (edge["node"] for edge in network["nodes"]["edges"]):
        history = [(h["status"], h["reason"]) for h in node["statusHistory"]]
        print(f"{node['name']}: {history}")
        # Faults that a retry gets past never fail a node.
        assert "FAILED" not in {status for status, _ in history}, history

    async def converged() -> dict[str, dict[str, Any]] | None:
        objects = await _objects(kube_api, namespace)
        services = {k for k in objects if k.startswith("Service/")}
        workloads = {k for k in objects if k.startswith("StatefulSet/")}
        if services != {f"Service/{n}" for n in names}:
            return None
        if workloads != {f"StatefulSet/{n}" for n in names}:
            return None
        return objects

    objects = await eventually(converged, within=60, every=0.5)
    ips = {n: objects[f"Service/{n}"]["spec"]["clusterIP"] for n in names}
    for name in names:  # each node advertises its own Service's address ...
        env = _env(objects[f"StatefulSet/{name}"])
        assert env["IP"] == ips[name]
        if name != "storm-coordinator":  # ... and peers dial the coordinator's
            assert env["COORDINATING_IP"] == ips["storm-coordinator"]
    running_ips = {e["node"]["name"]: e["node"]["ip"] for e in network["nodes"]["edges"]}
    assert running_ips == {n.removeprefix("storm-"): ips[n] for n in names}

    deleted = (await api.data(DELETE, id=network_id))["networkDelete"]
    assert deleted["userErrors"] == []

    async def nothing_left() -> bool:
        if await _objects(kube_api, namespace):
            return False
        count: int = (await api.data("{ networks { totalCount } }"))["networks"]["totalCount"]
        return count == 0

    await eventually(nothing_left, within=90, every=0.5)
    _report(fault_proxy, app)
    for kind in ("status:500", "status:503", "status:429", "latency", "gone", "cut"):
        assert fault_proxy.injected[kind] > 0, (kind, fault_proxy.injected)


def _report(proxy: FaultProxy, app: Any) -> None:
    """Print what was injected and what the client and the informers did about it."""
    deps = app.state.deps
    cluster = getattr(deps.cluster_reachable, "__self__", None)
    control = getattr(deps.kick, "__self__", None)
    print(f"\nfaults injected: {dict(proxy.injected)}; requests forwarded: {proxy.forwarded}")
    if cluster is not None:
        stats = cluster.stats
        print(
            f"client: {stats.requests} requests, retries {dict(stats.retries)}, "
            f"gave up {stats.gave_up}, creates not retried {stats.not_retried}, "
            f"throttled {stats.throttled} ({stats.throttle_seconds:.2f}s)"
        )
        assert stats.total_retries > 0
    for namespace, informer in getattr(control, "informers", {}).items():
        print(
            f"informer {namespace}: relists {informer.relists}, watches {informer.watches}, "
            f"410s {informer.gone}, handler failures {informer.handler_failures}"
        )
