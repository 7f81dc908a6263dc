"""End to end in the sandbox, with process pods: QaaS's chain probe reads the QNM stand-ins at
their pod IPs, and a node's status follows its chain."""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.helpers import GraphQLClient, eventually, sandbox_processes

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("node") is None,
        reason="process pods need root (network namespaces) and Node.js",
    ),
    pytest.mark.timeout(300),
]

NETWORK = """query($id: ID!) { node(id: $id) { ... on Network { status nodes { edges { node {
  id name role status statusReason pod { name ready }
  chain { blockNumber peerCount syncing enode clientVersion raftRole raftId validators probedAt
          error }
  statusHistory { status reason } } } } } } }"""


async def nodes_of(api: GraphQLClient, network_id: str) -> dict[str, dict[str, Any]]:
    data = await api.data(NETWORK, id=network_id)
    return {e["node"]["name"]: e["node"] for e in data["node"]["nodes"]["edges"]}


async def test_a_coordinator_and_a_peer_run_on_their_chain(api: GraphQLClient) -> None:
    created = await api.data(
        'mutation { networkCreate(input: {name: "acme", consensus: RAFT}) { network { id } } }'
    )
    network_id = created["networkCreate"]["network"]["id"]
    added = await api.data(
        'mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: "peer-1"}) '
        "{ node { id } userErrors { message } } }",
        id=network_id,
    )
    assert added["nodeAdd"]["node"], added

    async def running() -> dict[str, dict[str, Any]] | None:
        nodes = await nodes_of(api, network_id)
        ok = all(
            n["status"] == "RUNNING" and n["chain"] and (n["chain"]["peerCount"] or 0) >= 1
            for n in nodes.values()
        )
        return nodes if ok and len(nodes) == 2 else None

    first = await eventually(running, within=120, every=0.5)
    for node in first.values():
        chain = node["chain"]
        assert chain["enode"].startswith("enode://")
        assert chain["clientVersion"]
        assert chain["error"] is None
        assert chain["raftRole"] is None
        statuses = [c["status"] for c in node["statusHistory"]]
        assert "RUNNING" in statuses
        assert statuses.index("STARTING") < statuses.index("RUNNING")
    data = await api.data("query($id: ID!) { node(id: $id) { ... on Network { status } } }",
                          id=network_id)  # fmt: skip
    assert data["node"]["status"] == "RUNNING"

    async def grown() -> bool:
        nodes = await nodes_of(api, network_id)
        return all(
            n["chain"]["blockNumber"] > first[name]["chain"]["blockNumber"]
            for name, n in nodes.items()
        )

    await eventually(grown, within=60, every=0.5)


@pytest.mark.start_deadline(25)
async def test_a_peer_given_a_wrong_coordinator_joins_then_fails_about_peers(
    api: GraphQLClient, kube_api: client.ApiClient, process_namespace: str
) -> None:
    wrong = await _unused_cluster_ip(kube_api, process_namespace)
    joined = await api.data(
        'mutation($ip: String!) { networkJoin(input: {name: "far", coordinatorIp: $ip, '
        "consensus: RAFT}) { network { id } node { id } userErrors { message } } }",
        ip=wrong,
    )
    network_id = joined["networkJoin"]["network"]["id"]

    async def failed() -> dict[str, Any] | None:
        node = (await nodes_of(api, network_id))["peer"]
        return node if node["status"] == "FAILED" else None

    node = await eventually(failed, within=90, every=0.5)
    assert "no peers" in node["statusReason"], node
    statuses = [c["status"] for c in node["statusHistory"]]
    assert "JOINING" in statuses, statuses
    assert "RUNNING" not in statuses, statuses


async def test_a_killed_chain_turns_the_node_unhealthy_then_running_again(
    api: GraphQLClient, kube_api: client.ApiClient, process_namespace: str
) -> None:
    created = await api.data(
        'mutation { networkCreate(input: {name: "solo", consensus: RAFT}) { network { id } } }'
    )
    network_id = created["networkCreate"]["network"]["id"]

    async def coordinator(status: str) -> dict[str, Any] | None:
        node = (await nodes_of(api, network_id))["coordinator"]
        return node if node["status"] == status else None

    before = await eventually(lambda: coordinator("RUNNING"), within=90, every=0.5)
    pod = await client.CoreV1Api(kube_api).read_namespaced_pod(
        before["pod"]["name"], process_namespace
    )
    pids = sandbox_processes(f"/pods/{pod.metadata.uid}/")
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    down = await eventually(lambda: coordinator("UNHEALTHY"), within=30, every=0.2)
    assert down["statusReason"], down
    await eventually(lambda: coordinator("RUNNING"), within=90, every=0.5)
    history = [
        c["status"] for c in (await nodes_of(api, network_id))["coordinator"]["statusHistory"]
    ]
    assert history[-2:] == ["UNHEALTHY", "RUNNING"], history


async def _unused_cluster_ip(kube_api: client.ApiClient, namespace: str) -> str:
    """An address of the sandbox's Service range with no Service behind it (traffic to it
    stays on the machine)."""
    core = client.CoreV1Api(kube_api)
    probe = await core.create_namespaced_service(
        namespace, {"metadata": {"name": "range"}, "spec": {"ports": [{"port": 1}]}}
    )
    used = {s.spec.cluster_ip for s in (await core.list_service_for_all_namespaces()).items}
    base = probe.spec.cluster_ip.split(".")
    await core.delete_namespaced_service("range", namespace)
    for last in range(2, 250):
        candidate = ".".join([*base[:3], str(last)])
        if candidate not in used and candidate != probe.spec.cluster_ip:
            return candidate
    raise AssertionError("no free ClusterIP")
