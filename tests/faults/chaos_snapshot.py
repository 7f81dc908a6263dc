"""What the kill -9 harness compares: the database's rows, the cluster's objects with our labels,
and the nodes as the GraphQL API shows them, read one after the other.

Example::

    reader = SnapshotReader(api, sessions, kube, namespace="chaos-1", selector=selector_for("qaas"))
    snapshot = await reader.read(lookups=["<node global id>", ...])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.objects import NODE_ID
from app.domain.enums import Desired
from app.store.models import Network, Node
from schema.ids import raw_id_of
from tests.faults.chaos_burst import Api

Obj = dict[str, Any]

LISTING = """query($after: String) { networks(first: 100, after: $after) {
  pageInfo { hasNextPage endCursor }
  edges { node { id name status nodes(first: 100) { edges { node {
    id name role status statusReason pod { name phase ready reason message }
    statusHistory(last: 12) { status reason at } } } } } } } }"""
LOOKUP_CHUNK = 25  # aliases per query (the API allows 30)


@dataclass(frozen=True)
class Row:
    """A node row with its network's, as the reconciler reads them."""

    network_id: str
    network: str
    network_desired: Desired
    node_id: str
    node: str
    node_desired: Desired
    status: str
    reason: str | None
    revision: int

    @property
    def live(self) -> bool:
        return self.network_desired is Desired.PRESENT and self.node_desired is Desired.PRESENT

    @property
    def label(self) -> str:
        return f"{self.network}/{self.node} ({self.node_id[:8]})"


@dataclass
class Snapshot:
    networks: dict[str, tuple[str, Desired]] = field(default_factory=dict)  # id -> name, desired
    rows: dict[str, Row] = field(default_factory=dict)  # by node id
    objects: dict[str, dict[str, list[Obj]]] = field(default_factory=dict)  # kind -> node id ->
    unlabelled: list[str] = field(default_factory=list)  # ours by label, but no node-id label
    api_networks: dict[str, Obj] = field(default_factory=dict)  # by raw id
    api_nodes: dict[str, Obj] = field(default_factory=dict)  # by raw id, "network" added
    lookups: dict[str, bool] = field(default_factory=dict)  # node global id -> node(id) non-null

    def of(self, kind: str, node_id: str) -> list[Obj]:
        return self.objects.get(kind, {}).get(node_id, [])

    def node_ids_in_cluster(self) -> set[str]:
        return {node_id for by_node in self.objects.values() for node_id in by_node}


def live_pods(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def condition(pod: Obj, kind: str) -> str | None:
    for item in (pod.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return str(item.get("status"))
    return None


def describe_pod(pod: Obj) -> str:
    status = pod.get("status") or {}
    waiting = ""
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        detail = state.get("waiting") or state.get("terminated") or {}
        if detail.get("reason"):
            waiting = f" container={detail['reason']}"
    scheduled: Obj = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    unscheduled = ""
    if scheduled.get("status") == "False":
        unscheduled = f" ({scheduled.get('reason')}: {scheduled.get('message')})"
    deleting = " deleting" if pod["metadata"].get("deletionTimestamp") else ""
    return (
        f"pod {pod['metadata']['name']} phase={status.get('phase')} "
        f"ready={condition(pod, 'Ready')} scheduled={scheduled.get('status')}{unscheduled}"
        f"{waiting}{deleting}"
    )


def describe_api(node: Obj | None) -> str:
    if node is None:
        return "API: absent"
    history = " -> ".join(
        f"{c['status']}{'(' + c['reason'] + ')' if c['reason'] else ''}@{c['at'][11:23]}"
        for c in node.get("statusHistory") or []
    )
    return (
        f"API: status={node['status']} reason={node['statusReason']!r} pod={node['pod']} "
        f"history=[{history}]"
    )


class SnapshotReader:
    KINDS = ("services", "statefulsets", "persistentvolumeclaims", "pods")

    def __init__(
        self,
        api: Api,
        sessions: async_sessionmaker[AsyncSession],
        kube: client.ApiClient,
        namespace: str,
        selector: str,
    ) -> None:
        self.api = api
        self.sessions = sessions
        self.core = client.CoreV1Api(kube)
        self.apps = client.AppsV1Api(kube)
        self.namespace = namespace
        self.selector = selector

    async def read(self, lookups: list[str]) -> Snapshot:
        """The API, then the database, then the cluster. The reads are not one instant: a
        mismatch that only comes from their order lasts one poll, and the harness waits for
        agreement before it reports anything."""
        snapshot = Snapshot()
        await self._read_api(snapshot, lookups)
        await self._read_rows(snapshot)
        await self._read_cluster(snapshot)
        return snapshot

    async def _read_api(self, snapshot: Snapshot, lookups: list[str]) -> None:
        after: str | None = None
        while True:
            page = (await self.api.data(LISTING, after=after))["networks"]
            for edge in page["edges"]:
                network = edge["node"]
                network_id = raw_id_of(network["id"], "Network") or network["id"]
                snapshot.api_networks[network_id] = network
                for node_edge in network["nodes"]["edges"]:
                    node = dict(node_edge["node"], network=network["name"])
                    snapshot.api_nodes[raw_id_of(node["id"], "Node") or node["id"]] = node
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        for start in range(0, len(lookups), LOOKUP_CHUNK):
            chunk = lookups[start : start + LOOKUP_CHUNK]
            fields = " ".join(f'n{i}: node(id: "{gid}") {{ id }}' for i, gid in enumerate(chunk))
            found = await self.api.data(f"query {{ {fields} }}")
            for i, gid in enumerate(chunk):
                snapshot.lookups[gid] = found[f"n{i}"] is not None

    async def _read_rows(self, snapshot: Snapshot) -> None:
        async with self.sessions() as session:
            networks = {n.id: n for n in await session.scalars(select(Network))}
            nodes = list(await session.scalars(select(Node)))
        for network in networks.values():
            snapshot.networks[network.id] = (network.name, network.desired)
        for node in nodes:
            if (owner := networks.get(node.network_id)) is None:
                continue  # its network was made after the networks were read
            snapshot.rows[node.id] = Row(
                owner.id, owner.name, owner.desired, node.id, node.name, node.desired,
                node.status.value, node.status_reason, node.revision,
            )  # fmt: skip

    async def _read_cluster(self, snapshot: Snapshot) -> None:
        listings = {
            "services": self.core.list_namespaced_service,
            "statefulsets": self.apps.list_namespaced_stateful_set,
            # A node's data claim, made by its StatefulSet: deleted with the node, never orphaned.
            "persistentvolumeclaims": self.core.list_namespaced_persistent_volume_claim,
            "pods": self.core.list_namespaced_pod,
        }
        for kind, listing in listings.items():
            response = await listing(
                self.namespace, label_selector=self.selector, _preload_content=False
            )
            items: list[Obj] = (await response.json())["items"]
            by_node: dict[str, list[Obj]] = defaultdict(list)
            for item in items:
                node_id = (item["metadata"].get("labels") or {}).get(NODE_ID)
                if node_id:
                    by_node[node_id].append(item)
                else:
                    snapshot.unlabelled.append(f"{kind}/{item['metadata']['name']}")
            snapshot.objects[kind] = dict(by_node)
