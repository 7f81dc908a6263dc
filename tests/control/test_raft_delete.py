"""nodeDelete of a raft member: the raft leader removes its raft ID first (raft_removePeer), then
the node's objects and row go; a leader that keeps refusing fails the operation at the
deadline and the node stays; ``force`` removes the objects anyway; no raft ID or IBFT: no step.

The raft leader is a real local HTTP JSON-RPC server on 127.0.0.2:20010 (geth's RPC port; a
second pytest-xdist worker's is on 127.0.1.2; the test's QAAS_CHAIN_PROBE_NETWORKS allows
127.0.0.0/8) answering with recorded responses whose
shapes follow Quorum's Raft RPC API (GoQuorum docs, Reference > API methods > Raft methods,
https://docs.goquorum.consensys.net/Reference/Consensus/Raft-RPC-API and
https://docs.goquorum.consensys.io/reference/api-methods#raft-methods): ``raft_leader`` is the
leader's enode ID (hex), ``raft_cluster`` a list of ``{hostname, nodeActive, nodeId, p2pPort,
raftId, raftPort, role}``, ``raft_removePeer(raftId)`` returns null. The node rows' chain facts
(enode, raft ID, pod IP) are written through the node writer, as the chain probe would.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import CLAIMS, SERVICES, STATEFULSETS, Cluster
from app.cluster.errors import NotFound
from app.config import Settings, load_settings
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, NodeStatus, OperationState
from app.services import nodes
from app.services.results import Result, commit_unless_refused
from app.store.models import Node, Operation
from tests.chain.server import KEY_A, KEY_B
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually

# The port is geth's, fixed, so each pytest-xdist worker's leader has an address of its own
# (127.0.0.2, 127.0.1.2, ...): two workers running these tests at once could not both listen
# on one. None is PEER_IP, where nothing may listen.
LEADER_IP = f"127.0.{int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw'))}.2"
PEER_IP = "127.0.0.3"  # nothing listens there: asking it for the leader fails
RPC_PORT = 20010


@pytest.fixture
def settings(database_url: str, kubeconfig: Path, namespace: str) -> Settings:
    return load_settings(
        database_url=database_url, kubeconfig=str(kubeconfig), cluster="kubeconfig",
        namespace=namespace, resync_seconds=0.5, node_start_deadline=30, chain_probe="off",
        chain_probe_networks="10.0.0.0/8,127.0.0.0/8", chain_probe_timeout=1,
        raft_remove_deadline=3,
    )  # fmt: skip


def member(raft_id: int, key: str, host: str, role: str) -> dict[str, Any]:
    return {"hostname": host, "nodeActive": True, "nodeId": key, "p2pPort": 20000,
            "raftId": raft_id, "raftPort": 50400, "role": role}  # fmt: skip


class RaftLeader:
    """The leader's JSON-RPC: records each call; raft_removePeer drops the member, or with
    ``refuse`` "error" answers an error, with "ignore" answers null but keeps the member."""

    def __init__(self) -> None:
        self.cluster = [
            member(1, KEY_B, LEADER_IP, "minter"),
            member(2, KEY_A, PEER_IP, "verifier"),
        ]
        self.calls: list[tuple[str, list[Any]]] = []
        self.refuse: str | None = None
        self.on_remove: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        call = await request.json()
        method, params = call["method"], call.get("params") or []
        self.calls.append((method, params))
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call["id"]}
        if method == "raft_leader":
            reply["result"] = KEY_B
        elif method == "raft_cluster":
            reply["result"] = self.cluster
        elif method == "raft_removePeer":
            if self.on_remove is not None:
                await self.on_remove()
            if self.refuse == "error":
                reply["error"] = {"code": -32000, "message": "raft: proposal dropped"}
            elif self.refuse == "ignore":
                reply["result"] = None
            else:
                self.cluster = [m for m in self.cluster if m["raftId"] != params[0]]
                reply["result"] = None
        else:
            reply["error"] = {"code": -32601, "message": f"the method {method} does not exist"}
        return web.json_response(reply)

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


@pytest.fixture
async def leader() -> AsyncIterator[RaftLeader]:
    served = RaftLeader()
    app = web.Application()
    app.router.add_post("/", served.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LEADER_IP, RPC_PORT).start()
    yield served
    await runner.cleanup()


async def chain_facts(
    reconciler: Reconciler, node_id: str, *, raft_id: int | None, key: str, ip: str
) -> None:
    async def apply(_: AsyncSession, node: Node) -> bool:
        node.pod_ip, node.pod_ready = ip, True
        node.chain_enode = f"enode://{key}@{ip}:20000?discport=0&raftport=50400"
        node.chain_raft_id = raft_id
        return True

    await reconciler.writer.write(node_id, apply)


async def raft_network(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    consensus: Consensus = Consensus.RAFT,
    raft_id: int | None = 2,
) -> str:
    """A network "acme" whose coordinator leads raft and whose peer-1 is raft ID ``raft_id``,
    with their objects made; the peer's ID."""
    created = await Writes(sessions).create_network(tenant.id, "acme", consensus)
    assert created.network is not None
    assert created.node is not None
    added = await Writes(sessions).add_node(tenant.id, created.network.id, "peer-1")
    assert added.node is not None
    await chain_facts(reconciler, created.node.id, raft_id=1, key=KEY_B, ip=LEADER_IP)
    await chain_facts(reconciler, added.node.id, raft_id=raft_id, key=KEY_A, ip=PEER_IP)
    await reconciler.reconcile_once()
    await eventually(lambda: _exists(reconciler.cluster, STATEFULSETS, "acme-peer-1"))
    return added.node.id


async def _exists(cluster: Cluster, kind: Any, name: str) -> bool:
    try:
        await cluster.resource(kind).get(name)
    except NotFound:
        return False
    return True


async def delete(
    sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant, node_id: str, force: bool
) -> Result:
    return await commit_unless_refused(
        sessions, lambda work: nodes.delete_node(work, tenant.id, node_id, force)
    )


async def peer_gone(reconciler: Reconciler, node_id: str) -> bool:
    await reconciler.reconcile_once()
    async with reconciler.sessions() as session:
        row = await session.scalar(select(Node).where(Node.id == node_id))
    cluster = reconciler.cluster
    left = [await _exists(cluster, kind, "acme-peer-1") for kind in (STATEFULSETS, SERVICES)]
    left.append(await _exists(cluster, CLAIMS, "data-acme-peer-1-0"))
    return row is None and not any(left)


async def operation_of(sessions: async_sessionmaker[AsyncSession], op_id: str) -> Operation:
    async with sessions() as session:
        found = await session.get(Operation, op_id)
    assert found is not None
    return found


async def test_deleting_a_raft_peer_asks_the_leader_to_remove_its_raft_id_first(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    leader: RaftLeader,
) -> None:
    peer_id = await raft_network(sessions, reconciler, tenant)
    deleted = await delete(sessions, tenant, peer_id, force=False)
    assert not deleted.errors
    assert deleted.operation is not None
    seen: list[str | None] = []

    async def while_removing() -> None:  # the operation shows the step as it happens
        seen.append((await operation_of(sessions, deleted.operation.id)).message)  # type: ignore[union-attr]

    leader.on_remove = while_removing
    await eventually(lambda: peer_gone(reconciler, peer_id), within=30)

    assert ("raft_removePeer", [2]) in leader.calls
    assert leader.methods()[:4] == [
        "raft_leader",
        "raft_cluster",
        "raft_removePeer",
        "raft_cluster",
    ]
    assert seen == ["asking the raft leader acme-coordinator to remove raft ID 2"]
    assert [m["raftId"] for m in leader.cluster] == [1]
    operation = await operation_of(sessions, deleted.operation.id)
    assert operation.state is OperationState.SUCCEEDED
    assert await _exists(reconciler.cluster, STATEFULSETS, "acme-coordinator")


async def test_a_raft_id_already_gone_is_not_removed_again(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    leader: RaftLeader,
) -> None:
    """A restart after the leader removed the ID (but before the objects went) converges."""
    peer_id = await raft_network(sessions, reconciler, tenant)
    leader.cluster = leader.cluster[:1]
    assert not (await delete(sessions, tenant, peer_id, force=False)).errors
    await eventually(lambda: peer_gone(reconciler, peer_id), within=30)
    assert "raft_removePeer" not in leader.methods()
    assert "raft_cluster" in leader.methods()


@pytest.mark.parametrize(
    ("refuse", "says"),
    [("error", "raft: proposal dropped"), ("ignore", "raft ID 2 is still in the leader")],
)
async def test_a_leader_that_keeps_refusing_fails_the_operation_and_force_removes_the_node(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    leader: RaftLeader,
    refuse: str,
    says: str,
) -> None:
    """An error, or a null answer after which the ID is still in raft_cluster."""
    peer_id = await raft_network(sessions, reconciler, tenant)
    leader.refuse = refuse
    deleted = await delete(sessions, tenant, peer_id, force=False)
    assert deleted.operation is not None
    op_id = deleted.operation.id

    async def failed() -> Operation | None:
        await reconciler.reconcile_once()
        operation = await operation_of(sessions, op_id)
        return operation if operation.state is OperationState.FAILED else None

    operation = await eventually(failed, within=30)
    assert operation.message is not None
    assert "raft removal failed within 3 s" in operation.message
    assert says in operation.message
    assert leader.methods().count("raft_removePeer") >= 2  # retried on later passes
    async with sessions() as session:
        row = await session.get(Node, peer_id)
    assert row is not None
    assert row.status is NodeStatus.DELETING
    assert row.status_reason is not None
    assert "raft removal failed" in row.status_reason
    await reconciler.reconcile_once()
    assert await _exists(reconciler.cluster, STATEFULSETS, "acme-peer-1")

    calls = len(leader.calls)
    forced = await delete(sessions, tenant, peer_id, force=True)
    assert not forced.errors
    await eventually(lambda: peer_gone(reconciler, peer_id), within=30)
    assert len(leader.calls) == calls  # no raft step under force
    assert [m["raftId"] for m in leader.cluster] == [1, 2]


async def test_force_removes_a_raft_member_without_the_raft_step(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    leader: RaftLeader,
) -> None:
    peer_id = await raft_network(sessions, reconciler, tenant)
    assert not (await delete(sessions, tenant, peer_id, force=True)).errors
    await eventually(lambda: peer_gone(reconciler, peer_id), within=30)
    assert leader.calls == []


@pytest.mark.parametrize(
    ("consensus", "raft_id", "says"),
    [(Consensus.IBFT, 2, "the network runs IBFT"), (Consensus.RAFT, None, "no raft ID known")],
)
async def test_no_raft_step_without_raft(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    tenant: CallerTenant,
    leader: RaftLeader,
    consensus: Consensus,
    raft_id: int | None,
    says: str,
) -> None:
    peer_id = await raft_network(sessions, reconciler, tenant, consensus, raft_id)
    deleted = await delete(sessions, tenant, peer_id, force=False)
    assert deleted.operation is not None
    await reconciler.reconcile_once()  # the objects go; the operation says why without raft
    message = (await operation_of(sessions, deleted.operation.id)).message
    assert message is not None
    assert says in message
    await eventually(lambda: peer_gone(reconciler, peer_id), within=30)
    assert leader.calls == []
