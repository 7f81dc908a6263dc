"""A tenant's namespace, made ready before its nodes: the namespace itself and, where QaaS made
it, the RoleBinding that gives QaaS its rights there and the tenant's ResourceQuota.

Example::

    namespaces = TenantNamespaces(cluster, settings, on_ready=loop.watch_namespace)
    await namespaces.prepare(tenant)    # once per namespace per process; idempotent
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.cluster.client import RESOURCE_QUOTAS, ROLE_BINDINGS, Cluster, Obj, ResourceKind
from app.cluster.errors import Conflict
from app.cluster.objects import resource_quota, tenant_namespace_labels, tenant_role_binding
from app.config import Settings
from app.domain.storage import quantity_bytes
from app.store.models import Tenant

log = logging.getLogger("qaas.reconciler")


class TenantNamespaces:
    def __init__(
        self, cluster: Cluster, settings: Settings, on_ready: Callable[[str], None]
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        # Called with every namespace made ready (the control loop starts its pod informer).
        self.on_ready = on_ready
        self._ready: set[str] = set()

    def forget(self, namespace: str) -> None:
        """Check the namespace again on the next pass (it failed: deleted by hand, ...)."""
        self._ready.discard(namespace)

    async def prepare(self, tenant: Tenant) -> None:
        if tenant.namespace in self._ready:
            return
        labels = tenant_namespace_labels(tenant.name, self.settings.instance)
        created = await self.cluster.ensure_namespace(tenant.namespace, labels)
        if created or tenant.namespace != (self.settings.namespace or "default"):
            if self.settings.service_account:
                # Our rights in this namespace come from this binding: make it first.
                binding = tenant_role_binding(
                    self.settings.tenant_cluster_role, self.settings.service_account
                )
                await self._create(ROLE_BINDINGS, tenant.namespace, binding)
            quota = resource_quota(
                tenant.max_nodes, quantity_bytes(self.settings.node_storage_max_size)
            )
            await self._create(RESOURCE_QUOTAS, tenant.namespace, quota)
            if created:
                log.info("created namespace %s for tenant %s", tenant.namespace, tenant.name)
        self._ready.add(tenant.namespace)
        self.on_ready(tenant.namespace)

    async def _create(self, kind: ResourceKind, namespace: str, obj: Obj) -> None:
        try:
            await self.cluster.resource(kind, namespace).create(obj)
        except Conflict:
            pass  # there already
