"""A QaaS node keeps its identity and chain when its pod is replaced: the coordinator of a network
QaaS made (StatefulSet, claim, KEEP_FILES) runs as a real stand-in process; its pod deleted, the
new pod answers with the same enode and a block height not lower than before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.connect import ClusterTarget, connect
from app.config import Settings
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus
from app.domain.qnm import RPC_PORT
from app.events.bus import InProcessBus
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually
from tests.sandbox.test_qnm_pods import process_namespace  # noqa: F401 - a fixture
from tests.sandbox.test_qnm_pods import pytestmark as needs_processes

pytestmark = needs_processes
POD = "durable-coordinator-0"


async def _rpc(ip: str, method: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            answer = (await http.post(f"http://{ip}:{RPC_PORT}", json=body)).json()
    except (httpx.HTTPError, ValueError):
        return None
    return answer.get("result")


async def _answering(core: client.CoreV1Api, namespace: str, not_uid: str | None = None) -> Any:
    """(uid, enode, height) of the coordinator's pod once it is ready and answers."""
    try:
        pod = await core.read_namespaced_pod(POD, namespace)
    except client.ApiException:
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    if pod.metadata.uid == not_uid or not ready or not pod.status.pod_ip:
        return None
    info = await _rpc(pod.status.pod_ip, "admin_nodeInfo")
    height = await _rpc(pod.status.pod_ip, "eth_blockNumber")
    if not isinstance(info, dict) or not isinstance(height, str):
        return None
    return pod.metadata.uid, info["enode"], int(height, 16)


async def test_a_replaced_coordinator_pod_keeps_its_enode_and_chain(
    kube_api: client.ApiClient,
    process_namespace: str,  # noqa: F811 - the fixture imported above
    kubeconfig: Path,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: CallerTenant,
) -> None:
    assert tenant.namespace == process_namespace
    cluster = await connect(ClusterTarget("kubeconfig", kubeconfig), process_namespace)
    try:
        reconciler = Reconciler(sessions, cluster, settings, InProcessBus())
        await Writes(sessions).create_network(tenant.id, "durable", Consensus.RAFT)
        await reconciler.reconcile_once()
        core = client.CoreV1Api(kube_api)

        async def minted() -> Any:
            found = await _answering(core, process_namespace)
            return found if found and found[2] >= 2 else None

        uid, enode, height = await eventually(minted, within=90, every=0.5)
        await core.delete_namespaced_pod(POD, process_namespace)

        # The StatefulSet makes <name>-0 again, on the same claim, once the old one is gone.
        new_uid, new_enode, new_height = await eventually(
            lambda: _answering(core, process_namespace, not_uid=uid), within=90, every=0.5
        )
        assert new_uid != uid
        assert new_enode == enode
        assert new_height >= height
        await reconciler.reconcile_once()  # and QaaS leaves it as it is: nothing drifted
        pods = await core.list_namespaced_pod(process_namespace)
        assert [p.metadata.uid for p in pods.items] == [new_uid]
    finally:
        await cluster.close()
