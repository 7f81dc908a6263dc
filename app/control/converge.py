"""Make one node's objects exist as desired: its Service first (its ClusterIP is the address
the node advertises), then its StatefulSet with that address (whose controller makes the node's
data claim). A 409 on create means "read it, check it is ours, converge"; a drifted object is
replaced. A node made before StatefulSets still has a Deployment: ``retire_deployment`` deletes
it before its StatefulSet is created.

Example::

    service = await ensure_service(services, spec, observed.services.get(node_id))
    await retire_deployment(observed, node_id)
    await ensure_statefulset(statefulsets, spec, service_ip(service), coordinator_ip, current)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.cluster.client import Obj, Resource
from app.cluster.errors import Conflict, NotFound
from app.cluster.objects import NODE_ID, NodeObjects
from app.control.drift import service_drifted, statefulset_drifted, workload_drifted
from app.control.turns import Turns

log = logging.getLogger("qaas.reconciler")
INDEX_CHUNK = 250  # listed objects indexed between two chances of the event loop to run


class ForeignObject(Exception):
    """An object with our name exists and is not ours: we never touch it."""


@dataclass
class Observed:
    """One pass's view of one namespace: its API handles and our objects in it, by node id:
    Services, StatefulSets, their data claims, and the Deployments of nodes made before
    StatefulSets (``legacy``: only ever deleted)."""

    namespace: str
    service_api: Resource
    workload_api: Resource
    claim_api: Resource
    legacy_api: Resource
    services: dict[str, Obj] = field(default_factory=dict)
    workloads: dict[str, Obj] = field(default_factory=dict)
    claims: dict[str, Obj] = field(default_factory=dict)
    legacy: dict[str, Obj] = field(default_factory=dict)

    def kinds(self) -> list[tuple[Resource, dict[str, Obj]]]:
        """Every kind with its objects, in the order a node's objects are deleted: its
        workloads first (their pods hold the claim), its Service, its claim last."""
        return [
            (self.workload_api, self.workloads),
            (self.legacy_api, self.legacy),
            (self.service_api, self.services),
            (self.claim_api, self.claims),
        ]

    async def read(self, selector: str, turns: Turns) -> None:
        """List every kind's objects matching ``selector`` and index them, giving the event
        loop ``turns`` every ``INDEX_CHUNK`` objects."""
        for api, objects in self.kinds():
            items, _ = await api.list(selector)
            for start in range(0, len(items), INDEX_CHUNK):
                objects.update(Observed.index(items[start : start + INDEX_CHUNK]))
                await turns.take()

    async def release(self, turns: Turns) -> None:
        """Let go of the listed objects a few at a time: freeing 10,000 StatefulSets' decoded
        bodies at once held the event loop for about a tenth of a second."""
        for _, objects in self.kinds():
            while objects:
                for _ in range(min(len(objects), INDEX_CHUNK // 10)):
                    objects.popitem()
                await turns.take()

    @staticmethod
    def index(objects: Iterable[Obj]) -> dict[str, Obj]:
        """Our objects by node id. One with our labels but no node id (edited by hand, made by
        someone else) belongs to no node: it is left alone, and never stops the pass."""
        indexed: dict[str, Obj] = {}
        for obj in objects:
            node_id = (obj["metadata"].get("labels") or {}).get(NODE_ID)
            if node_id:
                indexed[node_id] = obj
            else:
                kind, name = obj.get("kind", "object"), obj["metadata"].get("name")
                log.warning("%s %s has our labels but no %s: left alone", kind, name, NODE_ID)
        return indexed


def service_ip(service: Obj) -> str | None:
    ip = service.get("spec", {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


def check_ours(current: Obj, spec: NodeObjects) -> None:
    labels = current["metadata"].get("labels") or {}
    if labels.get(NODE_ID) != spec.node_id:
        kind = current.get("kind", "object")
        raise ForeignObject(
            f'a {kind} named "{spec.name}" already exists in the namespace and is not '
            "this node's; QaaS leaves it alone"
        )


async def ensure_service(api: Resource, spec: NodeObjects, current: Obj | None) -> Obj:
    desired = spec.service()
    if current is None:
        try:
            return await api.create(desired)
        except Conflict:
            current = await api.get(spec.name)
            check_ours(current, spec)
    if not service_drifted(current, desired):
        return current
    # Drifted (edited by hand, or the service type setting changed): replace, keeping
    # the ClusterIP, which peers and the node itself advertise.
    desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    desired["spec"]["clusterIP"] = current["spec"].get("clusterIP")
    log.info("replacing drifted Service %s", spec.name)
    return await api.replace(spec.name, desired)


async def retire_deployment(observed: Observed, node_id: str) -> None:
    """Delete the Deployment a node ran as before QaaS made StatefulSets (the upgrade path).

    Its pod kept the node's files on its container filesystem: they go with it, and the node's
    StatefulSet starts it with new keys on an empty claim (see the README)."""
    old = observed.legacy.pop(node_id, None)
    if old is None:
        return
    name = old["metadata"]["name"]
    log.info("deleting Deployment %s/%s: the node now runs as a StatefulSet", observed.namespace,
             name)  # fmt: skip
    try:
        await observed.legacy_api.delete(name, old["metadata"]["uid"])
    except (NotFound, Conflict):
        pass  # gone already, or a newer object took the name: not ours to delete


async def ensure_statefulset(
    api: Resource, spec: NodeObjects, ip: str, coordinator_ip: str | None, current: Obj | None
) -> bool:
    """Create or replace the node's StatefulSet unless it is as wanted; True if it sent one."""
    if current is not None and not statefulset_drifted(current, spec, ip, coordinator_ip):
        return False  # the common case on every resync: nothing is built, nothing is sent
    desired = spec.statefulset(own_ip=ip, coordinator_ip=coordinator_ip)
    if current is None:
        try:
            await api.create(desired)
            log.info("created StatefulSet %s/%s (IP %s)", api.namespace, spec.name, ip)
            return True
        except Conflict:
            current = await api.get(spec.name)
            check_ours(current, spec)
    for attempt in range(3):
        if not workload_drifted(current, desired):
            return False
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        # What cannot change is kept as it is (a replace that changed it would be refused).
        for immutable in ("serviceName", "selector", "volumeClaimTemplates",
                          "podManagementPolicy"):  # fmt: skip
            if immutable in current["spec"]:
                desired["spec"][immutable] = current["spec"][immutable]
        log.info("replacing StatefulSet %s: it drifted from the desired spec", spec.name)
        try:
            await api.replace(spec.name, desired)
            return True
        except Conflict:
            # The controllers write the object too (its status): read it again and retry.
            if attempt == 2:
                raise
            current = await api.get(spec.name)
    return True  # not reached: the third Conflict is raised above
