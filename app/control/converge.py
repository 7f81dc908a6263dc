"""Make one node's objects exist as desired: its Service first (its ClusterIP is the address
the node advertises), then its Deployment with that address. A 409 on create means "read it,
check it is ours, converge"; a drifted object is replaced.

Example::

    service = await ensure_service(services, spec, observed.services.get(node_id))
    await ensure_deployment(deployments, spec, service_ip(service), coordinator_ip, current)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.cluster.client import Obj, Resource
from app.cluster.errors import Conflict
from app.cluster.objects import NODE_ID, NodeObjects
from app.control.drift import deployment_drifted, service_drifted

log = logging.getLogger("qaas.reconciler")


class ForeignObject(Exception):
    """An object with our name exists and is not ours: we never touch it."""


@dataclass
class Observed:
    """One pass's view of one namespace: its API handles and our objects in it, by node id."""

    namespace: str
    service_api: Resource
    deployment_api: Resource
    services: dict[str, Obj] = field(default_factory=dict)
    deployments: dict[str, Obj] = field(default_factory=dict)

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


async def ensure_deployment(
    api: Resource, spec: NodeObjects, ip: str, coordinator_ip: str | None, current: Obj | None
) -> None:
    desired = spec.deployment(own_ip=ip, coordinator_ip=coordinator_ip)
    if current is None:
        try:
            await api.create(desired)
            log.info("created Deployment %s/%s (IP %s)", api.namespace, spec.name, ip)
            return
        except Conflict:
            current = await api.get(spec.name)
            check_ours(current, spec)
    for attempt in range(3):
        if not deployment_drifted(current, desired):
            return
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        log.info("replacing Deployment %s: it drifted from the desired spec", spec.name)
        try:
            await api.replace(spec.name, desired)
            return
        except Conflict:
            # The controllers write the object too (its status): read it again and retry.
            if attempt == 2:
                raise
            current = await api.get(spec.name)
