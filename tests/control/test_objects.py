"""The reconciler creates exactly the QNM objects DESIGN.md describes, and only once."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import SERVICES, STATEFULSETS, Cluster
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus
from tests.conftest import CallerTenant
from tests.helpers import Writes

QNM_PORTS = {
    "comm-p2p": 50000, "comm-rpc": 50010, "comm-ws": 50020, "geth-p2p": 20000,
    "geth-rpc": 20010, "geth-ws": 20020, "raft": 40000, "constellation": 9000,
}  # fmt: skip


def _env(workload: dict[str, Any]) -> dict[str, str]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


async def test_coordinator_and_peer_objects_are_exactly_the_qnm_template(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "acme", Consensus.IBFT)
    assert created.network is not None
    added = await Writes(sessions).add_node(tenant.id, created.network.id, "peer-1")
    assert added.node is not None
    await reconciler.reconcile_once()

    services = cluster.resource(SERVICES)
    statefulsets = cluster.resource(STATEFULSETS)
    coordinator_svc = await services.get("acme-coordinator")
    peer_svc = await services.get("acme-peer-1")
    coordinator = await statefulsets.get("acme-coordinator")
    peer = await statefulsets.get("acme-peer-1")

    for service in (coordinator_svc, peer_svc):
        assert service["spec"]["type"] == "ClusterIP"  # geth RPC stays inside the cluster
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
        assert ports == {name: (number, number) for name, number in QNM_PORTS.items()}

    assert coordinator["apiVersion"] == "apps/v1"
    assert coordinator["spec"]["selector"]["matchLabels"] == {
        "qaas.dev/node-id": created.node.id if created.node else ""
    }
    coordinator_ip = coordinator_svc["spec"]["clusterIP"]
    assert _env(coordinator) == {
        "NODE_NAME": "coordinator",
        "ROLE": "coordinator",
        "CONSENSUS": "istanbul",
        "IP": coordinator_ip,
        "KEEP_FILES": "true",
    }
    assert _env(peer) == {
        "NODE_NAME": "peer-1",
        "ROLE": "dynamicPeer",
        "CONSENSUS": "istanbul",
        "IP": peer_svc["spec"]["clusterIP"],
        "COORDINATING_IP": coordinator_ip,
        "KEEP_FILES": "true",
    }
    pod = peer["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT (qnm-logs /bin/bash -i -c) runs
    assert container["args"] == ["node setupFromConfig.js"]
    assert container["workingDir"] == "/workspace/QuorumNetworkManager"
    assert container["image"] == "narayanprusty/qnm"
    assert {p["containerPort"] for p in container["ports"]} == set(QNM_PORTS.values())
    assert pod["automountServiceAccountToken"] is False
    assert peer["spec"]["replicas"] == 1
    assert peer["spec"]["serviceName"] == "acme-peer-1"
    assert peer["spec"]["podManagementPolicy"] == "Parallel"
    # QNM's data folders on the node's own claim, by subPath of the one "data" volume.
    assert [(m["name"], m["mountPath"], m["subPath"]) for m in container["volumeMounts"]] == [
        ("data", "/workspace/QuorumNetworkManager/Blockchain", "Blockchain"),
        ("data", "/workspace/QuorumNetworkManager/Constellation", "Constellation"),
    ]
    [claim] = peer["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    assert claim["metadata"]["labels"]["qaas.dev/node-id"] == added.node.id
    probe = container["readinessProbe"]
    assert probe["tcpSocket"]["port"] == 20010  # geth's RPC
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (10, 3)

    labels = peer["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "quorum-node"
    assert labels["app.kubernetes.io/instance"] == "acme-peer-1"
    assert labels["app.kubernetes.io/managed-by"] == "qaas"
    assert labels["qaas.dev/network-id"] == created.network.id
    assert labels["qaas.dev/node-id"] == added.node.id
    assert peer["spec"]["template"]["metadata"]["labels"] == labels
    assert peer_svc["metadata"]["labels"] == labels


async def test_reconciling_twice_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
    cluster: Cluster,
    reconciler: Reconciler,
    tenant: CallerTenant,
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "idem", Consensus.RAFT)
    assert created.network is not None
    await Writes(sessions).add_node(tenant.id, created.network.id, "peer-1")
    await reconciler.reconcile_once()

    async def versions() -> dict[str, str]:
        found: dict[str, str] = {}
        for kind in (SERVICES, STATEFULSETS):
            items, _ = await cluster.resource(kind).list("app.kubernetes.io/managed-by=qaas")
            for item in items:
                meta = item["metadata"]
                # A StatefulSet's resourceVersion moves with its status; its generation moves
                # only when its spec is written. A Service has no status to move.
                version = (
                    meta.get("generation") if kind is STATEFULSETS else meta["resourceVersion"]
                )
                found[f"{kind.kind}/{meta['name']}"] = f"{meta['uid']}@{version}"
        return found

    before = await versions()
    await reconciler.reconcile_once()
    await reconciler.reconcile_once()
    after = await versions()
    assert after == before
    assert len(after) == 4  # two Services, two StatefulSets: no duplicates
