"""What a QuorumNetworkManager (QNM v0.7.5-beta) node needs: ports, environment, command.

Facts from QNM's source (see DESIGN.md):

- ``IP`` is the address a node ADVERTISES (its enode and constellation URL). It must be the
  node's own Service ClusterIP; ``0.0.0.0`` (the seed's value) makes peers dial nowhere.
- ``COORDINATING_IP`` is the coordinator's address; peers wait for it.
- ``ROLE`` is ``coordinator`` or ``dynamicPeer``; ``CONSENSUS`` is ``raft`` or ``istanbul``.
- Addresses, not DNS names: that Quorum build predates hostnames in enodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.enums import Consensus, NodeRole

DEFAULT_IMAGE = "narayanprusty/qnm"
WORKING_DIR = "/workspace/QuorumNetworkManager"
# The pod gives only args, so the image's ENTRYPOINT runs: in manifests/qnm/Dockerfile that is
# ``qnm-logs /bin/bash -i -c`` (QNM's log files copied to stdout, prefixed), in an image without
# the wrapper ``/bin/bash -i -c`` as before. ENTRYPOINT is the image's own business.
ARGS = ["node setupFromConfig.js"]
# QNM keeps a node's keys, enode and chain (geth) and its constellation keys in these folders of
# its working directory, and wipes them at start unless KEEP_FILES is "true".
DATA_DIRS = ("Blockchain", "Constellation")
KEEP_FILES = "KEEP_FILES"
RPC_PORT = 20010  # geth's JSON-RPC (see PORTS)


@dataclass(frozen=True)
class Port:
    name: str  # an IANA_SVC_NAME: at most 15 characters
    number: int
    purpose: str


# 30303 (devp2p), listed by the seed, is never used by QNM and is left out on purpose.
PORTS: tuple[Port, ...] = (
    Port("comm-p2p", 50000, "comm-node peer-to-peer"),
    Port("comm-rpc", 50010, "comm-node RPC"),
    Port("comm-ws", 50020, "comm-node WebSocket"),
    Port("geth-p2p", 20000, "geth peer-to-peer"),
    Port("geth-rpc", 20010, "geth RPC (admin APIs, unlocked account: never publish outside)"),
    Port("geth-ws", 20020, "geth WebSocket"),
    Port("raft", 40000, "raft consensus"),
    Port("constellation", 9000, "constellation (private transactions)"),
)


@dataclass(frozen=True)
class NodeEnvironment:
    node_name: str
    role: NodeRole
    consensus: Consensus
    own_ip: str
    coordinator_ip: str | None  # required for peers

    def as_pairs(self) -> list[tuple[str, str]]:
        """The container's environment, in a stable order."""
        if self.role is NodeRole.PEER and not self.coordinator_ip:
            raise ValueError("a peer needs its coordinator's IP")
        pairs = [
            ("NODE_NAME", self.node_name),
            ("ROLE", self.role.qnm),
            ("CONSENSUS", self.consensus.qnm),
            ("IP", self.own_ip),
        ]
        if self.role is NodeRole.PEER:
            pairs.append(("COORDINATING_IP", str(self.coordinator_ip)))
        return pairs
