"""The agreement rules of the kill -9 harness, applied to one snapshot.

Desired == actual:
    every node row not marked for deletion has exactly one Service and one StatefulSet with its
    node-id label; nothing with our labels lacks a row (no orphans); no object kind has two for
    one node (no duplicates); no two live rows share a name.
Final state, read through the API:
    a ready pod -> the node is not PENDING / PROVISIONING / STARTING;
    an unschedulable pod (PodScheduled=False) -> PENDING with a reason "Unschedulable: ...";
    a node marked for deletion whose objects are gone -> gone from the API (and its row too).
What the server accepted stays accepted:
    an accepted networkCreate or nodeAdd exists unless its network's deletion was asked for;
    an accepted networkDelete leaves nothing behind.
Settled:
    every live node's pod is ready or unschedulable (the sandbox runs every pod it can place).

Example::

    verdict = judge(snapshot, ledger, trial=3, lookups_due=[...])
    verdict.disagreements   # [] once converged
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.domain.enums import Desired
from schema.ids import raw_id_of
from tests.faults.chaos_burst import Ledger
from tests.faults.chaos_snapshot import (
    Row,
    Snapshot,
    condition,
    describe_api,
    describe_pod,
    live_pods,
)

NOT_STARTED = {"PENDING", "PROVISIONING", "STARTING"}
UNSCHEDULABLE = "Unschedulable:"


@dataclass(frozen=True)
class Disagreement:
    trial: int
    kind: str
    subject: str  # "network/node (id)" or an object's name
    detail: str

    def __str__(self) -> str:
        return f"trial {self.trial}: {self.kind}: {self.subject}: {self.detail}"


@dataclass
class Verdict:
    disagreements: list[Disagreement] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)  # "ready", "unschedulable", ... checked

    @property
    def agreed(self) -> bool:
        return not self.disagreements


def _objects(snapshot: Snapshot, node_id: str) -> str:
    parts = []
    for kind in snapshot.objects:
        names = [o["metadata"]["name"] for o in snapshot.of(kind, node_id)]
        if names:
            parts.append(f"{kind}={names}")
    return " ".join(parts) or "no objects"


class Judge:
    def __init__(self, snapshot: Snapshot, ledger: Ledger, trial: int) -> None:
        self.snapshot = snapshot
        self.ledger = ledger
        self.trial = trial
        self.verdict = Verdict()

    def fail(self, kind: str, subject: str, detail: str) -> None:
        self.verdict.disagreements.append(Disagreement(self.trial, kind, subject, detail))

    def row_detail(self, row: Row) -> str:
        api = self.snapshot.api_nodes.get(row.node_id)
        return (
            f"row: desired={row.node_desired.value}/{row.network_desired.value} "
            f"status={row.status} reason={row.reason!r} revision={row.revision}; "
            f"{describe_api(api)}; cluster: {_objects(self.snapshot, row.node_id)}"
        )

    def live_node(self, row: Row) -> None:
        snap = self.snapshot
        for kind in ("services", "statefulsets"):
            count = len(snap.of(kind, row.node_id))
            if count != 1:
                problem = "missing" if count == 0 else "duplicate"
                self.fail(f"{problem}-{kind[:-1]}", row.label, self.row_detail(row))
        api = snap.api_nodes.get(row.node_id)
        if api is None:
            self.fail("missing-in-api", row.label, self.row_detail(row))
            return
        pods = live_pods(snap.of("pods", row.node_id))
        if len(pods) != 1:
            kind = "no-pod" if not pods else "duplicate-pod"
            pod_list = "; ".join(describe_pod(p) for p in pods)
            self.fail(kind, row.label, f"{self.row_detail(row)}; {pod_list}")
            return
        pod = pods[0]
        status, reason = api["status"], api["statusReason"] or ""
        if condition(pod, "Ready") == "True":
            self.verdict.seen["ready"] += 1
            if status in NOT_STARTED:
                self.fail(f"ready-pod-but-{status}", row.label,
                          f"{describe_pod(pod)}; {self.row_detail(row)}")  # fmt: skip
        elif condition(pod, "PodScheduled") == "False":
            self.verdict.seen["unschedulable"] += 1
            if status != "PENDING" or not reason.startswith(UNSCHEDULABLE):
                self.fail(f"unschedulable-pod-but-{status}", row.label,
                          f"{describe_pod(pod)}; {self.row_detail(row)}")  # fmt: skip
        else:
            self.fail("pod-not-settled", row.label, f"{describe_pod(pod)}; {describe_api(api)}")

    def doomed_node(self, row: Row) -> None:
        """A row marked for deletion: once converged, neither it nor its objects remain."""
        if row.node_id in self.snapshot.node_ids_in_cluster():
            self.fail("deletion-unfinished", row.label, self.row_detail(row))
        elif row.node_id in self.snapshot.api_nodes:
            self.fail("deleted-node-still-in-api", row.label, self.row_detail(row))
        else:
            self.fail("deleted-row-remains", row.label, self.row_detail(row))

    def orphans(self) -> None:
        snap = self.snapshot
        for node_id in sorted(snap.node_ids_in_cluster() - snap.rows.keys()):
            self.fail("orphan", node_id[:8], _objects(snap, node_id))
        for name in snap.unlabelled:
            self.fail("orphan", name, "our managed-by label but no node-id label")

    def duplicate_rows(self) -> None:
        live = [r for r in self.snapshot.rows.values() if r.live]
        names = Counter((r.network, r.node) for r in live)
        for (network, node), count in names.items():
            if count > 1:
                self.fail("duplicate-row", f"{network}/{node}", f"{count} live rows")
        present = Counter(
            name for name, wanted in self.snapshot.networks.values() if wanted is Desired.PRESENT
        )
        for name, count in present.items():
            if count > 1:
                self.fail("duplicate-row", name, f"{count} live networks of that name")

    def phantoms(self) -> None:
        for node_id, node in self.snapshot.api_nodes.items():
            if node_id not in self.snapshot.rows:
                self.fail("phantom-in-api", f"{node['network']}/{node['name']}",
                          f"no row; {describe_api(node)}")  # fmt: skip

    def promises(self, lookups_due: list[str]) -> None:
        """Accepted mutations: their effect is there (or, for deletes, everything is gone)."""
        snap, ledger = self.snapshot, self.ledger
        for gid in ledger.created:
            raw = raw_id_of(gid, "Network") or gid
            if gid not in ledger.delete_sent and raw not in snap.networks:
                self.fail("lost-networkCreate", gid, f"accepted in trial {ledger.created[gid]}")
        for network_gid, nodes in ledger.nodes_of.items():
            if network_gid in ledger.delete_sent:
                continue
            for gid in nodes:
                if (raw_id_of(gid, "Node") or gid) not in snap.rows:
                    self.fail("lost-node", gid, f"of network {network_gid}: accepted, now no row")
        for gid, trial in ledger.deleted.items():
            raw = raw_id_of(gid, "Network") or gid
            if raw in snap.networks or raw in snap.api_networks:
                self.fail("lost-networkDelete", gid, f"accepted in trial {trial}, still there")
        for gid in lookups_due:
            if snap.lookups.get(gid):
                self.fail("deleted-node-still-in-api", gid, "node(id) still answers")

    def run(self, lookups_due: list[str]) -> Verdict:
        for row in self.snapshot.rows.values():
            if row.live:
                self.live_node(row)
            else:
                self.doomed_node(row)
        self.orphans()
        self.duplicate_rows()
        self.phantoms()
        self.promises(lookups_due)
        self.verdict.seen["live nodes"] = sum(1 for r in self.snapshot.rows.values() if r.live)
        return self.verdict


def judge(snapshot: Snapshot, ledger: Ledger, trial: int, lookups_due: list[str]) -> Verdict:
    return Judge(snapshot, ledger, trial).run(lookups_due)
