"""Nodes a pass found settled, remembered so that the next pass skips them if nothing changed.

A node is settled when its pass sent nothing to the Kubernetes API and wrote nothing to its row.
What decided that is its fingerprint: the node's row (every fact its status derives from), its
network's row, its coordinator's ClusterIP, whether another node of its network ran, and the
identity of its Service and StatefulSet (uid and resourceVersion: the API gives an object a new
resourceVersion on every change, and a new uid when it is deleted and made again). The settings
are fixed for the process. So a node whose fingerprint is the same on the next pass would come
out the same: it needs no desired objects, no comparison and no status derivation. At 10,000
settled nodes these were about half of a pass (py-spy, bench/reconcile_scale.py).

Not remembered: a node with a start deadline (its status depends on the clock), with an old
Deployment to delete, or whose pass failed, waited or acted. A drifted object has a new
resourceVersion, so it is compared (and repaired) on the next pass.

Example::

    memo.begin()                       # at the start of a pass
    fingerprint = fingerprint_of(network, nodes, node, coordinator_ip, observed)
    ip = memo.unchanged(node.id, fingerprint)   # its ClusterIP if it is as last settled
    ...                                # else converge it, then, if it is settled:
    memo.settled(node.id, fingerprint, ip)
    memo.end()                         # nodes not seen in this pass are forgotten
"""

from __future__ import annotations

from app.cluster.client import Obj
from app.control.converge import Observed
from app.domain.enums import Desired, NodeRole
from app.store.models import Network
from app.store.pass_rows import PassNode

Fingerprint = tuple[object, ...]


class SettledNodes:
    def __init__(self) -> None:
        self._last: dict[str, tuple[Fingerprint, str]] = {}
        self._now: dict[str, tuple[Fingerprint, str]] = {}
        self.skipped = 0  # nodes the pass under way (or the last one) found unchanged

    def begin(self) -> None:
        self._now, self.skipped = {}, 0

    def end(self) -> None:
        self._last = self._now

    def unchanged(self, node_id: str, fingerprint: Fingerprint | None) -> str | None:
        """The node's ClusterIP if it was settled with this fingerprint, else None."""
        if fingerprint is None:
            return None
        last = self._last.get(node_id)
        if last is None or last[0] != fingerprint:
            return None
        self._now[node_id] = last
        self.skipped += 1
        return last[1]

    def settled(self, node_id: str, fingerprint: Fingerprint | None, ip: str) -> None:
        if fingerprint is not None:
            self._now[node_id] = (fingerprint, ip)


def fingerprint_of(
    network: Network,
    nodes: list[PassNode],
    node: PassNode,
    coordinator_ip: str | None,
    observed: Observed,
) -> Fingerprint | None:
    """What decides a pass's outcome for ``node``, or None where that depends on more."""
    if node.start_deadline is not None or node.id in observed.legacy:
        return None
    service, workload = observed.services.get(node.id), observed.workloads.get(node.id)
    if service is None or workload is None:
        return None
    return (
        node, network.id, network.name, network.consensus, network.storage_size,
        network.storage_class, network.external_coordinator_ip, coordinator_ip,
        another_ran(nodes, node), _identity(service), _identity(workload),
    )  # fmt: skip


def _identity(obj: Obj) -> tuple[object, object]:
    metadata = obj["metadata"]
    return metadata.get("uid"), metadata.get("resourceVersion")


def another_ran(nodes: list[PassNode], node: PassNode) -> bool:
    """As app.store.chain.another_node_ran, from the pass's rows."""
    return node.role is NodeRole.COORDINATOR and any(
        other.id != node.id and other.desired is Desired.PRESENT and other.start_deadline is None
        for other in nodes
    )
