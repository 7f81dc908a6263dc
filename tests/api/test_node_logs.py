"""Node.logs: the last lines of a node's pod's log, read through the Kubernetes API (pods/log).

Against the sandbox: process pods run the QNM stand-in, whose stdout has "[standin]" lines, and
the sandbox's kubelet serves them to the apiserver as a kubelet does; a simulated pod's log is
empty. Bounds, tenancy and a Kubernetes refusal are checked through the whole service.
"""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain.enums import Role
from app.services import logs
from app.services.tenancy import create_token
from tests.api.queries import coordinator_id, create_network
from tests.helpers import GraphQLClient, eventually

LOGS = "query($id: ID!, $tail: Int!) { node(id: $id) { ... on Node { status logs(tail: $tail) } } }"
POD = "query($id: ID!) { node(id: $id) { ... on Node { status pod { name } } } }"

needs_processes = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("node") is None,
    reason="process pods need root (network namespaces) and Node.js",
)


async def _running_coordinator(api: GraphQLClient, network: str) -> str:
    """Creates ``network`` through the API; its coordinator's ID once it is RUNNING."""
    created = await create_network(api, network)
    node_id = await coordinator_id(api, created["network"]["id"])

    async def running() -> bool:
        node = (await api.data(POD, id=node_id))["node"]
        return bool(node["status"] == "RUNNING" and node["pod"] and node["pod"]["name"])

    await eventually(running, within=60, every=0.25)
    return node_id


async def _logs(api: GraphQLClient, node_id: str, tail: int) -> list[str]:
    lines: list[str] = (await api.data(LOGS, id=node_id, tail=tail))["node"]["logs"]
    return lines


async def _label_process(kube_api: client.ApiClient, namespace: str) -> None:
    """Pods of ``namespace`` run as processes (the suite's sandbox simulates them otherwise)."""
    await client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": {"sandbox.qaas.dev/runtime": "process"}}}
    )


@needs_processes
async def test_logs_of_a_running_node_are_its_pods_last_lines(
    api: GraphQLClient,
    kube_api: client.ApiClient,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test's namespace is its tenant's (settings.namespace); labelled before any pod is made.
    await _label_process(kube_api, namespace)
    node_id = await _running_coordinator(api, "logs")

    async def stand_in_said_it_started() -> list[str] | None:
        lines = await _logs(api, node_id, 1000)
        return lines if any("[standin] starting coordinator" in line for line in lines) else None

    await eventually(stand_in_said_it_started, within=30, every=0.5)
    last = await _logs(api, node_id, 5)
    assert 1 <= len(last) <= 5
    assert any("[standin]" in line for line in last), last

    async def the_last_two_of_three_or_more() -> bool:
        before = await _logs(api, node_id, 1000)
        last_two = await _logs(api, node_id, 2)
        after = await _logs(api, node_id, 1000)
        return len(before) >= 3 and before == after and last_two == before[-2:]

    # Once the log has three lines or more, between two reads that agree, `tail: 2` is the
    # last two of them.
    await eventually(the_last_two_of_three_or_more, within=30, every=0.5)

    # The byte bound reaches the kubelet (limitBytes): the text stops there, whatever `tail`.
    monkeypatch.setattr(logs, "LIMIT_BYTES", 60)
    cut = await _logs(api, node_id, 1000)
    assert cut
    assert len("\n".join(cut).encode()) <= 60


async def test_a_simulated_node_has_an_empty_log_and_a_node_without_a_pod_too(
    api: GraphQLClient,
) -> None:
    # In the mutation's own answer the node is PENDING: no pod yet, so no log.
    created = await api.data(
        'mutation { networkCreate(input: {name: "quiet"}) { network { '
        "nodes { edges { node { id pod { name } logs } } } } } }"
    )
    (edge,) = created["networkCreate"]["network"]["nodes"]["edges"]
    assert edge["node"]["pod"] is None
    assert edge["node"]["logs"] == []
    node_id = edge["node"]["id"]

    async def running() -> bool:
        return bool((await api.data(POD, id=node_id))["node"]["status"] == "RUNNING")

    await eventually(running, within=30, every=0.25)
    assert await _logs(api, node_id, 100) == []  # the sandbox's simulated pods say nothing


@pytest.mark.parametrize("tail", [0, -1, 1001])
async def test_a_tail_out_of_bounds_is_a_clear_error(api: GraphQLClient, tail: int) -> None:
    created = await create_network(api, "bounds")
    node_id = await coordinator_id(api, created["network"]["id"])
    body = await api.execute(LOGS, id=node_id, tail=tail)
    (error,) = body["errors"]
    assert error["message"] == f"`tail` must be between 1 and 1000 (got {tail})"
    assert error["path"] == ["node", "logs"]
    assert (await api.execute(LOGS, id=node_id, tail=1000)).get("errors") is None


async def test_another_tenants_member_cannot_read_them(
    api: GraphQLClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    created = await create_network(api, "private")
    node_id = await coordinator_id(api, created["network"]["id"])
    other = f"other-{uuid.uuid4().hex[:6]}"
    _, _, secret = await create_token(sessions, other, Role.MEMBER, settings, "member")
    headers = {"Authorization": f"Bearer {secret}"}
    document = {"query": LOGS, "variables": {"id": node_id, "tail": 5}}
    response = await api.http.post("/graphql", json=document, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"node": None}}  # as if the node did not exist
    assert (await api.data(LOGS, id=node_id, tail=5))["node"] is not None  # its own tenant can


async def test_a_kubernetes_refusal_is_a_clear_graphql_error(
    api: GraphQLClient, kube_api: client.ApiClient, namespace: str
) -> None:
    """A pod of the node (by its labels, owned by something else so no ReplicaSet adopts it)
    whose container is not QNM's: the apiserver refuses to read container "qnm" of it."""
    node_id = await _running_coordinator(api, "refused")
    core = client.CoreV1Api(kube_api)
    (pod,) = (await core.list_namespaced_pod(namespace)).items
    owner = await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "not-a-replicaset"}}
    )
    controller = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
                  "uid": owner.metadata.uid, "controller": True}  # fmt: skip
    stranger: dict[str, Any] = {
        "metadata": {
            "name": "stranger",
            "labels": pod.metadata.labels,
            "ownerReferences": [controller],
        },
        "spec": {"containers": [{"name": "other", "image": "registry.local/other:1"}]},
    }
    # The observer takes the node's newest pod, by creationTimestamp: whole seconds. A stranger
    # made in the coordinator pod's second would tie with it, and either could be taken.
    made: datetime.datetime = pod.metadata.creation_timestamp

    async def a_second_later() -> bool:
        return datetime.datetime.now(datetime.UTC) >= made + datetime.timedelta(seconds=1)

    await eventually(a_second_later, within=5, every=0.05)
    await core.create_namespaced_pod(namespace, stranger)

    async def observed() -> bool:
        node = (await api.data(POD, id=node_id))["node"]
        return bool(node["pod"] and node["pod"]["name"] == "stranger")

    await eventually(observed, within=30, every=0.25)
    body = await api.execute(LOGS, id=node_id, tail=5)
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "CLUSTER_ERROR"}
    assert error["message"].startswith("cannot read the log of pod stranger of node coordinator:")
    assert "qnm" in error["message"]  # Kubernetes's own reason: no container "qnm" in it
    assert body["data"] == {"node": None}
