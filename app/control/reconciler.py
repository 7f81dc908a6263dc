"""The reconciler: a level-triggered loop that makes the cluster match the database.

Each pass, for every tenant: make its namespace ready, list QaaS's Services, StatefulSets, data
claims and (from before StatefulSets) Deployments there (by label), and act on the desired state:
create a node's Service, read its ClusterIP, create its StatefulSet with that IP (deleting a
Deployment the node ran as before); replace what drifted; delete what is marked ABSENT (claims
included) and, once the cluster has nothing left of it, the row; delete orphans that carry our
labels but have no row. Every action is idempotent, so a pass can be interrupted at any line and
the next one converges. A full pass runs every ``resync_seconds`` and sooner when something kicks
the loop (a pod gone, another replica); a mutation's kick names its network, and the pass it asks
for covers that network only (app/control/schedule.py). Each unit of its work waits for its turn
while the API answers requests (app/events/foreground.py). The pieces: ``namespaces`` (preparing a
tenant), ``converge`` (one node's objects), ``removal`` (deletion and orphans), ``node_writer``
(recording what was done), ``settled`` (nodes found settled, skipped by the next pass while nothing
they depend on changed).

Example::

    reconciler = Reconciler(sessions, cluster, settings, bus)
    task = asyncio.create_task(reconciler.run())
    reconciler.kick(network_id)   # after writing a network's desired state
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import CLAIMS, DEPLOYMENTS, SERVICES, STATEFULSETS, Cluster, Resource
from app.cluster.errors import Conflict, Invalid, KubeError, NotFound
from app.cluster.objects import NETWORK_ID, NodeObjects, selector_for
from app.config import Settings
from app.control.converge import (
    ForeignObject,
    Observed,
    ensure_service,
    ensure_statefulset,
    retire_deployment,
    service_ip,
)
from app.control.namespaces import NotProvisioned, TenantNamespaces
from app.control.node_writer import Apply, NodeWriter, WriteConflict
from app.control.progress import facts_of
from app.control.removal import Removal
from app.control.schedule import PassSchedule
from app.control.settled import SettledNodes, another_ran, fingerprint_of
from app.control.turns import Turns, collector_paused
from app.domain.enums import Desired, NodeRole, NodeStatus
from app.domain.status import node_status
from app.events.bus import EventBus
from app.events.foreground import Foreground
from app.metrics import reconcile_error, reconcile_pass
from app.store import pass_rows, tenants
from app.store.models import Network, Node, Tenant, utcnow
from app.store.pass_rows import PassNode

log = logging.getLogger("qaas.reconciler")


class Reconciler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cluster: Cluster,
        settings: Settings,
        bus: EventBus,
        foreground: Foreground | None = None,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.settings = settings
        self.chain_required = settings.chain_probe == "on"
        self.foreground = foreground or Foreground()  # the API's requests go first
        fence = cluster.caller.fence  # leader election's: it guards the database writes too
        self.writer = NodeWriter(sessions, bus, chain_required=self.chain_required, fence=fence,
                                 foreground=self.foreground)  # fmt: skip
        self.removal = Removal(sessions, self.writer, settings)
        self.namespaces = TenantNamespaces(cluster, settings, on_ready=lambda _: None)
        self._unprovisioned: set[str] = set()  # namespaces said to be not provisioned
        self._on_current: Callable[[set[str]], None] = lambda _: None
        self.schedule = PassSchedule(settings.resync_seconds)
        self._stopping = False
        self.passes = 0  # full passes
        self.network_passes = 0  # passes over kicked networks only
        self.settled = SettledNodes()  # skipped by the next pass while unchanged
        self.turns = Turns(foreground=self.foreground)  # app/control/turns.py
        self.failing_since: float | None = None  # time.monotonic() of the first failed pass
        self.last_error: str | None = None

    def on_namespace(
        self, ready: Callable[[str], None], current: Callable[[set[str]], None] = lambda _: None
    ) -> None:
        """Call ``ready`` with every tenant namespace a pass makes ready, and ``current`` with
        the namespaces of all tenants at the start of each pass (a deleted tenant's is not)."""
        self.namespaces.on_ready = ready
        self._on_current = current

    def kick(self, network_id: str | None = None) -> None:
        """Ask for a pass soon: over one network (after a mutation of it) or over all."""
        self.schedule.kick(network_id)

    def stop(self) -> None:
        """Finish the pass under way, then return from run() (see ControlLoop.stop)."""
        self._stopping = True
        self.schedule.wake()

    async def run(self) -> None:
        """Reconcile until stopped; a failed pass is retried after a backoff with jitter, and
        ``failing_since`` / ``last_error`` say since when it fails and why (for /readyz)."""
        failures = 0
        while not self._stopping:
            networks = self.schedule.take()
            if networks == set():
                await self.schedule.wait()  # woken to stop
                continue
            try:
                with reconcile_pass("all" if networks is None else "networks"):
                    await self.reconcile_once(networks)
                if networks is None:  # only a full pass says that all is well again
                    failures, self.failing_since, self.last_error = 0, None, None
                    self.schedule.full_pass_in(self.settings.resync_seconds)
            except Exception as error:
                failures += 1
                self.last_error = _describe(error)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                delay = min(self.settings.resync_seconds, 0.5 * 2**failures)
                delay *= random.uniform(0.5, 1.0)
                log.warning("reconcile pass failed (%s); retrying in %.1fs", self.last_error,
                            delay, exc_info=not isinstance(error, KubeError))  # fmt: skip
                self.schedule.full_pass_in(delay)
            await self.schedule.wait()

    # -- one pass ---------------------------------------------------------------------------

    def resources(self, namespace: str) -> tuple[Resource, Resource]:
        """The Service and StatefulSet APIs of a namespace (a seam for fault-injection tests)."""
        return (
            self.cluster.resource(SERVICES, namespace),
            self.cluster.resource(STATEFULSETS, namespace),
        )

    async def reconcile_once(self, only: Collection[str] | None = None) -> None:
        """One pass: over every tenant, or (``only``) over those networks and nothing else."""
        with collector_paused(only is None):  # a full pass only (app/control/turns.py)
            await self._pass(only)

    async def _pass(self, only: Collection[str] | None) -> None:
        await self.turns.take()
        async with self.sessions() as session:
            every_tenant = await tenants.all_tenants(session)
            networks = await pass_rows.pass_rows(session, only, self.turns.take)
        by_tenant: dict[str, list[NetworkRows]] = {t.id: [] for t in every_tenant}
        for network, nodes in networks:
            by_tenant.setdefault(network.tenant_id, []).append((network, nodes))
        if only is None:
            current = {t.namespace for t in every_tenant}
            self.namespaces.retain(current)
            self._unprovisioned &= current
            self._on_current(current)
            self.settled.begin()
        else:  # the tenants of those networks; what is settled stays remembered as it is
            every_tenant = [t for t in every_tenant if by_tenant[t.id]]
        failed: list[str] = []
        for tenant in every_tenant:
            # One tenant's broken namespace (forbidden, deleted by hand, over quota) or a
            # database error must not stop the others: each is tried, the pass says what failed.
            try:
                await self._reconcile_namespace(tenant, by_tenant[tenant.id], only)
            except NotProvisioned as waiting:
                # An administrator's step is missing: the nodes say so, QaaS itself is fine.
                if tenant.namespace not in self._unprovisioned:
                    log.warning("tenant %s: %s", tenant.name, waiting)
                self._unprovisioned.add(tenant.namespace)
                reconcile_error(waiting)
                await self._record_tenant_failure(by_tenant[tenant.id], waiting)
            except Exception as error:
                self.namespaces.forget(tenant.namespace)
                reconcile_error(error)
                failed.append(f"{tenant.name} ({_describe(error)})")
                log.warning(
                    "tenant %s (namespace %s): %s", tenant.name, tenant.namespace,
                    _describe(error), exc_info=not isinstance(error, KubeError),
                )  # fmt: skip
                await self._record_tenant_failure(by_tenant[tenant.id], error)
            else:
                self._unprovisioned.discard(tenant.namespace)
        if only is None:
            self.settled.end()  # nodes gone (or failed in this pass) are forgotten
            self.passes += 1
        else:
            self.network_passes += 1
        if failed:
            raise PassFailed(f"the pass failed for tenant(s) {', '.join(failed)}")

    async def _record_tenant_failure(self, networks: list[NetworkRows], error: Exception) -> None:
        """Every node of a tenant whose pass failed says why, and start deadlines still run."""
        reason = retry_reason(error)
        for _, nodes in networks:
            for node in nodes:
                with contextlib.suppress(Exception):  # the database may be what failed
                    await self.writer.write(node.id, _retrying(reason))

    async def _reconcile_namespace(
        self, tenant: Tenant, networks: list[NetworkRows], only: Collection[str] | None
    ) -> None:
        await self.namespaces.prepare(tenant)
        selector = selector_for(self.settings.instance)
        if only is not None:  # the objects of those networks only
            selector += f",{NETWORK_ID} in ({','.join(sorted(n.id for n, _ in networks))})"
        service_api, workload_api = self.resources(tenant.namespace)
        claim_api = self.cluster.resource(CLAIMS, tenant.namespace)
        legacy_api = self.cluster.resource(DEPLOYMENTS, tenant.namespace)
        observed = Observed(tenant.namespace, service_api, workload_api, claim_api, legacy_api)
        await observed.read(selector, self.turns)
        known = {node.id for _, nodes in networks for node in nodes}
        loaded: dict[str, Network | None] = {}  # networks read as ORM objects to delete nodes
        for network, nodes in networks:
            coordinator_ip = network.external_coordinator_ip
            # Coordinators first: peers need the coordinator's ClusterIP.
            for node in sorted(nodes, key=lambda n: n.role is not NodeRole.COORDINATOR):
                await self.turns.take()
                # A failure on one node is recorded on it; the pass goes on with the next.
                try:
                    if network.desired is Desired.ABSENT or node.desired is Desired.ABSENT:
                        await self._remove(network, node, observed, loaded)
                        continue
                    ip = await self._converge(network, nodes, node, coordinator_ip, observed)
                except Exception as error:
                    await self._node_failed(node, error)
                    continue
                if node.role is NodeRole.COORDINATOR and not network.external_coordinator_ip:
                    coordinator_ip = ip
            if network.desired is Desired.ABSENT:
                await self.removal.remove_network_if_empty(network)
        if only is None:  # an object of no known node is an orphan only in a full view
            await self.removal.delete_orphans(observed, known)
        await observed.release(self.turns)

    async def _remove(
        self,
        network: Network,
        node: PassNode,
        observed: Observed,
        loaded: dict[str, Network | None],
    ) -> None:
        """Delete a node marked ABSENT (or of a network marked ABSENT) from its network's ORM
        rows, read once per pass and network (what deletion works from)."""
        if network.id not in loaded:
            async with self.sessions() as session:
                loaded[network.id] = await pass_rows.network_for_removal(session, network.id)
        full = loaded[network.id]
        row = next((n for n in full.nodes if n.id == node.id), None) if full else None
        if full is not None and row is not None:  # else deleted since the pass read it
            await self.removal.remove_node(full, row, observed)

    async def _node_failed(self, node: PassNode, error: Exception) -> None:
        reconcile_error(error)
        if isinstance(error, (SQLAlchemyError, WriteConflict)):
            log.warning("node %s: %s; the next pass tries again", node.name, _describe(error))
            return  # the database is what failed: nothing can be recorded now
        if isinstance(error, KubeError):
            log.warning("node %s: %s", node.name, _describe(error))
        else:
            log.exception("node %s: the pass failed for it", node.name)
        await self.writer.write(node.id, _retrying(retry_reason(error)))

    async def _converge(
        self,
        network: Network,
        nodes: list[PassNode],
        node: PassNode,
        coordinator_ip: str | None,
        observed: Observed,
    ) -> str | None:
        """Bring one node's objects to the desired state; returns its ClusterIP if it has one.

        A refusal that will not change by retrying (a foreign object holds the name, the API
        rejects the object as invalid) fails the node; any other API error is recorded as the
        reason the node is still on its way, and retried by the next pass."""
        fingerprint = fingerprint_of(network, nodes, node, coordinator_ip, observed)
        if (unchanged := self.settled.unchanged(node.id, fingerprint)) is not None:
            return unchanged  # as when it was last settled (app/control/settled.py)
        spec = NodeObjects.for_node(
            self.settings, network_id=network.id, node_id=node.id, network=network.name,
            node=node.name, role=node.role, consensus=network.consensus,
            storage_size=network.storage_size, storage_class=network.storage_class,
        )  # fmt: skip
        error: str | None = None
        retrying: str | None = None
        ip: str | None = None
        # The row's has_deployment predates StatefulSets: it says the node's workload exists.
        has_deployment = node.id in observed.workloads
        sent = True  # anything sent to the API for the node (or its objects not compared)
        try:
            current = observed.services.get(node.id)
            service = await ensure_service(observed.service_api, spec, current)
            ip = service_ip(service)
            if ip is None:
                error = "its Service has no ClusterIP yet"
            elif node.role is NodeRole.PEER and not coordinator_ip:
                pass  # waits for the coordinator's Service (peers need its address)
            else:
                await retire_deployment(observed, node.id)
                made = await ensure_statefulset(
                    observed.workload_api, spec, ip, coordinator_ip,
                    observed.workloads.get(node.id),
                )  # fmt: skip
                sent = made or service is not current
                has_deployment = True
        except ForeignObject as foreign:
            reconcile_error(foreign)
            error = str(foreign)
        except Invalid as invalid:
            reconcile_error(invalid)
            error = f"the Kubernetes API rejected its objects: {invalid}"
        except (NotFound, Conflict):
            self.kick(network.id)  # deleted or changed while we worked: the next pass converges
            return None
        except KubeError as failed:  # what was made so far is recorded, with why it stopped
            reconcile_error(failed)
            log.warning("node %s: %s", node.name, _describe(failed))
            retrying = retry_reason(failed)
        wrote = await self._record(node, has_service=ip is not None, has_deployment=has_deployment,
                                   service_ip=ip, error=error, retrying=retrying,
                                   another_ran=another_ran(nodes, node))  # fmt: skip
        if ip is not None and not (sent or wrote or error or retrying):
            self.settled.settled(node.id, fingerprint, ip)
        return ip

    async def _record(
        self,
        node: PassNode,
        *,
        has_service: bool,
        has_deployment: bool,
        service_ip: str | None,
        error: str | None,
        retrying: str | None,
        another_ran: bool = False,
    ) -> bool:
        """Write what the pass found for the node, if it differs from its row; True if it did."""
        # A node still on its way has nothing to write either while facts and status agree:
        # its start deadline is part of the status (``facts_of`` compares it with now). Only a
        # RUNNING node whose deadline is still set needs the write that clears it.
        settled = node.start_deadline is None or node.status is not NodeStatus.RUNNING
        unchanged = (
            node.has_service, node.has_deployment, node.reconcile_error, node.retry_reason
        ) == (has_service, has_deployment, error, retrying) and (
            service_ip is None or node.service_ip == service_ip
        )  # fmt: skip
        # A stored status that disagrees with the stored facts is repaired, settled or not.
        facts = facts_of(node, utcnow(), chain_required=self.chain_required,
                         another_ran=another_ran)  # fmt: skip
        agrees = node_status(facts) == (node.status, node.status_reason)
        if settled and unchanged and agrees:
            return False  # the common case on every resync: nothing to write

        async def objects_made(_: AsyncSession, row: Node) -> bool:
            before = (row.has_service, row.has_deployment, row.service_ip, row.reconcile_error,
                      row.retry_reason)  # fmt: skip
            row.has_service, row.has_deployment = has_service, has_deployment
            row.service_ip = service_ip or row.service_ip
            row.reconcile_error, row.retry_reason = error, retrying
            after = (row.has_service, row.has_deployment, row.service_ip, error, retrying)
            return before != after

        await self.writer.write(node.id, objects_made, skip_absent=True)
        return True


# A network and its nodes, as a pass reads them (app/store/pass_rows.py).
NetworkRows = tuple[Network, list[PassNode]]


class PassFailed(KubeError):
    """A pass could not converge one or more tenants (each is named, with why)."""


def _describe(error: BaseException) -> str:
    return str(error) if type(error) is KubeError else f"{type(error).__name__}: {error}"


def retry_reason(error: BaseException) -> str:
    """What a node's status says while the reconciler retries after ``error``."""
    return f"Retrying: {_describe(error)}"


def _retrying(reason: str) -> Apply:
    async def apply(_: AsyncSession, node: Node) -> bool:
        changed, node.retry_reason = node.retry_reason != reason, reason
        return changed

    return apply
