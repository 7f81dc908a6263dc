"""The reconciler: a level-triggered loop that makes the cluster match the database.

Each pass lists QaaS's Services and Deployments (by label), reads the desired state, and acts:
create a node's Service, read its ClusterIP, create its Deployment with that IP; replace what
drifted; delete what is marked ABSENT and, once the cluster has nothing left of it, the row;
delete orphans that carry our labels but have no row. Every action is idempotent, so a pass
can be interrupted at any line and the next one converges. Passes run every
``resync_seconds`` and sooner when something kicks the loop (a mutation, a pod event).

Example::

    reconciler = Reconciler(sessions, cluster, settings, bus)
    task = asyncio.create_task(reconciler.run())
    reconciler.kick()   # after writing desired state
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from app.config import Settings
from app.db.models import Network, Node, Operation, Tenant, utcnow
from app.domain.enums import Desired, NodeRole, OperationKind, OperationState
from app.events.bus import EventBus, NodeChange
from app.k8s.client import (
    DEPLOYMENTS,
    RESOURCE_QUOTAS,
    ROLE_BINDINGS,
    SERVICES,
    Cluster,
    Obj,
    Resource,
)
from app.k8s.errors import Conflict, KubeError, NotFound
from app.k8s.objects import (
    NODE_ID,
    NodeObjects,
    resource_quota,
    selector_for,
    tenant_namespace_labels,
    tenant_role_binding,
)
from app.reconcile.drift import deployment_drifted, service_drifted
from app.reconcile.progress import STARTING_KINDS, finish_operations, refresh_status
from app.views import NodeView

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
        return {o["metadata"]["labels"][NODE_ID]: o for o in objects}


def _service_ip(service: Obj) -> str | None:
    ip = service.get("spec", {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


class Reconciler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cluster: Cluster,
        settings: Settings,
        bus: EventBus,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.settings = settings
        self.bus = bus
        # Called with every tenant namespace a pass visits (the control loop starts its
        # pod informer there).
        self.on_namespace: Callable[[str], None] = lambda _: None
        self._prepared: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.passes = 0

    def kick(self) -> None:
        """Ask for a pass soon (after a mutation or an observed change)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the pass under way, then return from run() (see ControlLoop.stop)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Reconcile until stopped; errors are logged and retried with backoff."""
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                await self.reconcile_once()
                failures = 0
                delay = self.settings.resync_seconds
            except KubeError as error:
                failures += 1
                delay = min(self.settings.resync_seconds, 0.5 * 2**failures)
                log.warning("reconcile pass failed (%s); retrying in %.1fs", error, delay)
            except Exception:
                failures += 1
                delay = min(self.settings.resync_seconds, 0.5 * 2**failures)
                log.exception("reconcile pass crashed; retrying in %.1fs", delay)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    # -- one pass ---------------------------------------------------------------------------

    def resources(self, namespace: str) -> tuple[Resource, Resource]:
        """The Service and Deployment APIs of a namespace (a seam for fault-injection tests)."""
        return (
            self.cluster.resource(SERVICES, namespace),
            self.cluster.resource(DEPLOYMENTS, namespace),
        )

    async def reconcile_once(self) -> None:
        async with self.sessions() as session:
            tenants = list(await session.scalars(select(Tenant)))
            networks = list(
                await session.scalars(select(Network).options(selectinload(Network.nodes)))
            )
        by_tenant: dict[str, list[Network]] = {t.id: [] for t in tenants}
        for network in networks:
            by_tenant.setdefault(network.tenant_id, []).append(network)
        failed: list[str] = []
        for tenant in tenants:
            # One tenant's broken namespace (forbidden, deleted by hand, over quota) must not
            # stop the others: each is tried, and the pass reports what failed.
            try:
                await self._reconcile_namespace(tenant, by_tenant[tenant.id])
            except KubeError as error:
                self._prepared.discard(tenant.namespace)
                failed.append(tenant.name)
                log.warning("tenant %s (namespace %s): %s", tenant.name, tenant.namespace, error)
        self.passes += 1
        if failed:
            raise KubeError(f"the pass failed for tenant(s) {', '.join(failed)}")

    async def _prepare(self, tenant: Tenant) -> None:
        """Make the tenant's namespace (and its quota, where we own the namespace) exist."""
        if tenant.namespace in self._prepared:
            return
        labels = tenant_namespace_labels(tenant.name, self.settings.instance)
        created = await self.cluster.ensure_namespace(tenant.namespace, labels)
        if created or tenant.namespace != (self.settings.namespace or "default"):
            if self.settings.service_account:
                # Our rights in this namespace come from this binding: make it first.
                bindings = self.cluster.resource(ROLE_BINDINGS, tenant.namespace)
                binding = tenant_role_binding(
                    self.settings.tenant_cluster_role, self.settings.service_account
                )
                try:
                    await bindings.create(binding)
                except Conflict:
                    pass  # there already
            quotas = self.cluster.resource(RESOURCE_QUOTAS, tenant.namespace)
            try:
                await quotas.create(resource_quota(tenant.max_nodes))
            except Conflict:
                pass  # there already
            if created:
                log.info("created namespace %s for tenant %s", tenant.namespace, tenant.name)
        self._prepared.add(tenant.namespace)
        self.on_namespace(tenant.namespace)

    async def _reconcile_namespace(self, tenant: Tenant, networks: list[Network]) -> None:
        await self._prepare(tenant)
        selector = selector_for(self.settings.instance)
        service_api, deployment_api = self.resources(tenant.namespace)
        services, _ = await service_api.list(selector)
        deployments, _ = await deployment_api.list(selector)
        observed = Observed(
            tenant.namespace, service_api, deployment_api,
            Observed.index(services), Observed.index(deployments),
        )  # fmt: skip
        known = {node.id for network in networks for node in network.nodes}
        for network in networks:
            coordinator_ip = network.external_coordinator_ip
            # Coordinators first: peers need the coordinator's ClusterIP.
            for node in sorted(network.nodes, key=lambda n: n.role is not NodeRole.COORDINATOR):
                if network.desired is Desired.ABSENT or node.desired is Desired.ABSENT:
                    await self._remove(network, node, observed)
                    continue
                ip = await self._converge(network, node, coordinator_ip, observed)
                if node.role is NodeRole.COORDINATOR and not network.external_coordinator_ip:
                    coordinator_ip = ip
            if network.desired is Desired.ABSENT:
                await self._remove_network_if_empty(network)

        await self._delete_orphans(observed, known)

    async def _converge(
        self, network: Network, node: Node, coordinator_ip: str | None, observed: Observed
    ) -> str | None:
        """Bring one node's objects to the desired state; returns its ClusterIP if it has one."""
        spec = self._objects(network, node)
        error: str | None = None
        ip: str | None = None
        has_deployment = node.id in observed.deployments
        try:
            service = await self._ensure_service(
                observed.service_api, spec, observed.services.get(node.id)
            )
            ip = _service_ip(service)
            if ip is None:
                error = "its Service has no ClusterIP yet"
            elif node.role is NodeRole.PEER and not coordinator_ip:
                pass  # waits for the coordinator's Service (peers need its address)
            else:
                await self._ensure_deployment(
                    observed.deployment_api, spec, ip, coordinator_ip,
                    observed.deployments.get(node.id),
                )  # fmt: skip
                has_deployment = True
        except ForeignObject as foreign:
            error = str(foreign)
        except (NotFound, Conflict):
            self.kick()  # deleted or changed while we worked: the next pass converges it
            return None
        await self._record(node, has_service=ip is not None, has_deployment=has_deployment,
                           service_ip=ip, error=error)  # fmt: skip
        return ip

    def _objects(self, network: Network, node: Node) -> NodeObjects:
        return NodeObjects(
            network_id=network.id,
            node_id=node.id,
            network=network.name,
            node=node.name,
            role=node.role,
            consensus=network.consensus,
            image=self.settings.node_image,
            service_type=self.settings.node_service_type,
            installation=self.settings.instance,
            pod_annotations=tuple(sorted(self.settings.node_pod_annotations.items())),
        )

    async def _ensure_service(self, api: Resource, spec: NodeObjects, current: Obj | None) -> Obj:
        desired = spec.service()
        if current is None:
            try:
                return await api.create(desired)
            except Conflict:
                current = await api.get(spec.name)
                self._check_ours(current, spec)
        if not service_drifted(current, desired):
            return current
        # Drifted (edited by hand, or the service type setting changed): replace, keeping
        # the ClusterIP, which peers and the node itself advertise.
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        desired["spec"]["clusterIP"] = current["spec"].get("clusterIP")
        log.info("replacing drifted Service %s", spec.name)
        return await api.replace(spec.name, desired)

    async def _ensure_deployment(
        self,
        api: Resource,
        spec: NodeObjects,
        ip: str,
        coordinator_ip: str | None,
        current: Obj | None,
    ) -> None:
        desired = spec.deployment(own_ip=ip, coordinator_ip=coordinator_ip)
        if current is None:
            try:
                await api.create(desired)
                log.info("created Deployment %s/%s (IP %s)", api.namespace, spec.name, ip)
                return
            except Conflict:
                current = await api.get(spec.name)
                self._check_ours(current, spec)
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

    @staticmethod
    def _check_ours(current: Obj, spec: NodeObjects) -> None:
        labels = current["metadata"].get("labels") or {}
        if labels.get(NODE_ID) != spec.node_id:
            kind = current.get("kind", "object")
            raise ForeignObject(
                f'a {kind} named "{spec.name}" already exists in the namespace and is not '
                "this node's; QaaS leaves it alone"
            )

    async def _record(
        self,
        node: Node,
        *,
        has_service: bool,
        has_deployment: bool,
        service_ip: str | None,
        error: str | None,
    ) -> None:
        settled = node.start_deadline is None  # no start deadline left to check
        unchanged = (node.has_service, node.has_deployment, node.reconcile_error) == (
            has_service,
            has_deployment,
            error,
        ) and (service_ip is None or node.service_ip == service_ip)
        if settled and unchanged:
            return  # the common case on every resync: nothing to write
        async with self.sessions.begin() as session:
            row = await session.get(Node, node.id)
            if row is None or row.desired is Desired.ABSENT:
                return
            row.has_service, row.has_deployment = has_service, has_deployment
            row.service_ip = service_ip or row.service_ip
            row.reconcile_error = error
            changed = await refresh_status(session, row)
            if changed:
                row.revision += 1
            network = await session.get(Network, row.network_id)
            assert network is not None
            view = NodeView.of(row, network)
        if changed:
            self.bus.publish(NodeChange(view.id, view.network_id, view.tenant_id, view))

    # -- deletion ---------------------------------------------------------------------------

    async def _remove(self, network: Network, node: Node, observed: Observed) -> None:
        deployment = observed.deployments.pop(node.id, None)
        service = observed.services.pop(node.id, None)
        async with self.sessions.begin() as session:
            row = await session.get(Node, node.id)
            if row is not None and row.desired is not Desired.ABSENT:
                row.desired = Desired.ABSENT  # its network is being deleted
            if row is not None and await refresh_status(session, row):
                row.revision += 1
                view = NodeView.of(row, network)
                self.bus.publish(NodeChange(view.id, view.network_id, view.tenant_id, view))
            await session.execute(
                update(Operation)
                .where(
                    Operation.node_id == node.id,
                    Operation.kind == OperationKind.NODE_DELETE,
                    Operation.state == OperationState.PENDING,
                )
                .values(state=OperationState.DELETING, updated_at=utcnow())
            )
        for resource, obj in (
            (observed.deployment_api, deployment),
            (observed.service_api, service),
        ):
            if obj is not None:
                try:
                    await resource.delete(obj["metadata"]["name"], obj["metadata"]["uid"])
                except (NotFound, Conflict):
                    pass  # gone already, or replaced by a newer object: not ours to delete
        if deployment is not None or service is not None:
            return  # the next pass confirms they are gone before the row goes
        async with self.sessions.begin() as session:
            await session.execute(delete(Node).where(Node.id == node.id))
            await finish_operations(
                session, node_id=node.id, kinds=(OperationKind.NODE_DELETE,),
                message="the node and its objects are deleted",
            )  # fmt: skip
            await _fail_unfinished_starts(session, node.id)
        snapshot = NodeView.of(node, network)
        self.bus.publish(NodeChange(node.id, network.id, network.tenant_id, snapshot, deleted=True))
        log.info("deleted node %s of network %s", node.name, network.name)

    async def _remove_network_if_empty(self, network: Network) -> None:
        async with self.sessions.begin() as session:
            remaining = await session.scalar(select(Node.id).where(Node.network_id == network.id))
            if remaining is not None:
                return
            await session.execute(delete(Network).where(Network.id == network.id))
            await finish_operations(
                session, network_id=network.id, kinds=(OperationKind.NETWORK_DELETE,),
                message="the network and all of its objects are deleted",
            )  # fmt: skip
        log.info("deleted network %s", network.name)

    async def _delete_orphans(self, observed: Observed, known: set[str]) -> None:
        """Objects with our labels whose node has no row (e.g. a crash before a commit)."""
        for resource, objects in (
            (observed.deployment_api, observed.deployments),
            (observed.service_api, observed.services),
        ):
            for node_id, obj in objects.items():
                if node_id in known:
                    continue
                name = obj["metadata"]["name"]
                log.info("deleting orphan %s %s", obj.get("kind", ""), name)
                try:
                    await resource.delete(name, obj["metadata"]["uid"])
                except (NotFound, Conflict):
                    pass


async def _fail_unfinished_starts(session: AsyncSession, node_id: str) -> None:
    now = utcnow()
    for operation in await session.scalars(
        select(Operation).where(
            Operation.node_id == node_id,
            Operation.kind.in_(STARTING_KINDS),
            Operation.state.not_in([OperationState.SUCCEEDED, OperationState.FAILED]),
        )
    ):
        operation.state, operation.finished_at = OperationState.FAILED, now
        operation.message = "the node was deleted before it was running"
