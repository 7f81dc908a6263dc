"""Raft membership on node deletion: before a raft member's objects go, the current raft leader
removes its raft ID (``raft_removePeer``), so stale members do not erode the raft majority.

One try (``RaftRemoval.try_remove``) per reconciler pass, level-triggered and safe to repeat:

1. ``raft_leader`` on a running member of the network (other nodes first, the deleted node
   last) gives the leader's enode ID; the node whose recorded enode (``chain_enode``) has that
   key is the leader, dialled at its pod IP on geth's RPC port.
2. ``raft_cluster`` on the leader: if the raft ID is not in it, the step is done (a restart
   after a removal, or a second call, costs nothing more).
3. ``raft_removePeer(raftId)`` on the leader, then ``raft_cluster`` again: done only when the
   ID is gone.

Any other outcome is a ``Pending`` with the reason, which the caller records and retries on
later passes until the deletion's deadline. Only addresses in ``QAAS_CHAIN_PROBE_NETWORKS``
(app/domain/probe_scope.py) are dialled. Which nodes need the step: ``needs_raft_step``.

Example::

    removal = RaftRemoval(settings)
    outcome = await removal.try_remove(network, node, on_step=show)   # Done or Pending
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.chain.probe import GETH_RPC_PORT
from app.chain.rpc import RpcClient, Unreachable
from app.config import Settings
from app.domain.enums import Consensus, Desired
from app.domain.probe_scope import may_dial, probe_networks
from app.store.models import Network, Node


@dataclass(frozen=True)
class Done:
    message: str


@dataclass(frozen=True)
class Pending:
    reason: str


def needs_raft_step(network: Network, node: Node) -> bool:
    """A node deleted on its own (not with its network), of a raft network, whose chain facts
    give it a raft ID, not forced and not removed from raft yet."""
    return (
        network.desired is Desired.PRESENT
        and network.consensus is Consensus.RAFT
        and node.chain_raft_id is not None
        and not node.delete_force
        and not node.raft_removed
    )


def skip_message(network: Network, node: Node) -> str:
    """Why a deleted node has no raft step (for its operation's message)."""
    if network.desired is Desired.ABSENT:
        return "the whole network is deleted: no raft step"
    if node.delete_force:
        return "force: removing the objects without the raft step"
    if network.consensus is not Consensus.RAFT:
        return f"the network runs {network.consensus.value}: no raft step"
    if node.raft_removed:
        return "removed from raft; removing the objects"
    return (
        "no raft ID known for the node (it never joined, or the chain probe is off): no raft step"
    )


def enode_key(enode: str | None) -> str | None:
    """The public key of ``enode://<key>@host:port?...``: raft's node ID."""
    if not enode or not enode.startswith("enode://"):
        return None
    return enode[len("enode://") :].split("@", 1)[0].lower() or None


class RaftRemoval:
    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.chain_probe_timeout
        self.networks = probe_networks(settings.chain_probe_networks)
        self.calls = 0  # raft_removePeer calls made

    def _url(self, node: Node) -> str | None:
        address = node.pod_ip
        if not address or not may_dial(address, self.networks):
            return None
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{GETH_RPC_PORT}"

    async def try_remove(
        self, network: Network, node: Node, on_step: Callable[[str], Awaitable[None]]
    ) -> Done | Pending:
        raft_id = node.chain_raft_id
        assert raft_id is not None
        async with RpcClient(timeout=self.timeout) as rpc:
            found = await self._leader(rpc, network, node)
            if isinstance(found, Pending):
                return found
            leader, url = found
            cluster = await self._cluster(rpc, url, leader)
            if isinstance(cluster, Pending):
                return cluster
            if raft_id not in cluster:
                return Done(f"raft ID {raft_id} is not in the raft cluster (any more)")
            await on_step(f"asking the raft leader {network.name}-{leader.name} "
                          f"to remove raft ID {raft_id}")  # fmt: skip
            self.calls += 1
            try:
                reply = await rpc.call(url, "raft_removePeer", [raft_id])
            except Unreachable as error:
                return Pending(f"raft_removePeer on the leader {leader.name}: {error}")
            if not reply.ok:
                return Pending(f"raft_removePeer on the leader {leader.name}: {reply.describe()}")
            cluster = await self._cluster(rpc, url, leader)
            if isinstance(cluster, Pending):
                return cluster
            if raft_id in cluster:
                return Pending(f"raft ID {raft_id} is still in the leader {leader.name}'s "
                               "raft_cluster after raft_removePeer")  # fmt: skip
            return Done(f"the raft leader {leader.name} removed raft ID {raft_id}")

    async def _leader(
        self, rpc: RpcClient, network: Network, node: Node
    ) -> tuple[Node, str] | Pending:
        members = sorted(
            (n for n in network.nodes if n.pod_ready and n.pod_ip),
            key=lambda n: n.id == node.id,  # the deleted node last
        )
        said: list[str] = []
        for member in members:
            url = self._url(member)
            if url is None:
                said.append(f"{member.name}: {member.pod_ip} is outside QAAS_CHAIN_PROBE_NETWORKS")
                continue
            try:
                reply = await rpc.call(url, "raft_leader")
            except Unreachable as error:
                said.append(f"{member.name}: {error}")
                continue
            if not reply.ok:
                said.append(f"{member.name}: raft_leader: {reply.describe()}")
                continue
            if not isinstance(reply.result, str) or not reply.result:
                said.append(f"{member.name}: raft_leader: no leader ({reply.result!r})")
                continue
            key = reply.result.lower().removeprefix("0x")
            leader = next((n for n in network.nodes if enode_key(n.chain_enode) == key), None)
            if leader is None:
                said.append(f"{member.name}: the raft leader {key[:16]}... is no node of "
                            "this network whose enode QaaS knows")  # fmt: skip
                continue
            url = self._url(leader)
            if url is None:
                said.append(f"the raft leader {leader.name} has no pod IP QaaS may dial")
                continue
            return leader, url
        if not members:
            return Pending("no running member of the network to ask for the raft leader")
        return Pending("no raft leader found: " + "; ".join(said))

    @staticmethod
    async def _cluster(rpc: RpcClient, url: str, leader: Node) -> set[int] | Pending:
        try:
            reply = await rpc.call(url, "raft_cluster")
        except Unreachable as error:
            return Pending(f"raft_cluster on the leader {leader.name}: {error}")
        if not reply.ok:
            return Pending(f"raft_cluster on the leader {leader.name}: {reply.describe()}")
        if not isinstance(reply.result, list):
            return Pending(f"raft_cluster on the leader {leader.name}: not a list of members")
        ids = (entry.get("raftId") for entry in reply.result if isinstance(entry, dict))
        return {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}
