"""A tenant's namespace, made ready before its nodes.

Provisioning a tenant is one function, ``provision``: the namespace, the RoleBinding that
gives QaaS's ServiceAccount ``qaas-tenant`` there, the tenant's ResourceQuota and its
NetworkPolicy. It needs cluster-scoped rights (an administrator's), so who runs it depends on
``QAAS_TENANT_PROVISIONING``:

- ``auto`` (the default outside a cluster, e.g. the local sandbox, whose admin credentials QaaS
  holds): the reconciler provisions a tenant on first use, as ``prepare`` below.
- ``admin`` (the default in a cluster): an administrator runs ``qaas tenant create`` (app/cli),
  which calls ``provision`` with an admin kubeconfig; the reconciler only checks that the
  namespace is provisioned (it can read the tenant's NetworkPolicy). Until it is, the tenant's
  nodes say so in their statusReason; nothing else stops.

Example::

    namespaces = TenantNamespaces(cluster, settings, on_ready=loop.watch_namespace)
    await namespaces.prepare(tenant)    # once per namespace per process; idempotent
    await provision(admin_cluster, tenant, settings)   # `qaas tenant create` / `update`
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.cluster.client import (
    NETWORK_POLICIES,
    RESOURCE_QUOTAS,
    ROLE_BINDINGS,
    Cluster,
    Obj,
    ResourceKind,
)
from app.cluster.connect import in_cluster
from app.cluster.errors import Conflict, Forbidden, NotFound
from app.cluster.objects import (
    POLICY_NAME,
    network_policy,
    resource_quota,
    tenant_namespace_labels,
    tenant_role_binding,
)
from app.config import Settings
from app.domain.storage import quantity_bytes
from app.store.models import Tenant

log = logging.getLogger("qaas.reconciler")


class NotProvisioned(Exception):
    """A tenant's namespace is not provisioned, and provisioning is an administrator's act."""


def auto_provisioning(settings: Settings) -> bool:
    """True if QaaS provisions tenants itself (``QAAS_TENANT_PROVISIONING``)."""
    if settings.tenant_provisioning is not None:
        return settings.tenant_provisioning == "auto"
    return not in_cluster()


def tenant_objects(tenant: Tenant, settings: Settings, *, with_quota: bool) -> list[Obj]:
    """What provisioning ``tenant`` makes, in order, each with its ``metadata.namespace``:
    the namespace, the RoleBinding (with ``QAAS_SERVICE_ACCOUNT``), the ResourceQuota (with
    ``with_quota``) and the NetworkPolicy. `qaas tenant create --manifests` prints them."""
    labels = tenant_namespace_labels(tenant.name, settings.instance)
    namespace: Obj = {"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": tenant.namespace, "labels": labels}}  # fmt: skip
    inside: list[Obj] = []
    if settings.service_account:
        # QaaS's rights in this namespace come from this binding.
        inside.append(tenant_role_binding(settings.tenant_cluster_role, settings.service_account))
    if with_quota:
        inside.append(
            resource_quota(tenant.max_nodes, quantity_bytes(settings.node_storage_max_size))
        )
    inside.append(network_policy(settings.instance))
    for obj in inside:
        obj["metadata"]["namespace"] = tenant.namespace
    return [namespace, *inside]


def own_namespace(tenant: Tenant, settings: Settings) -> bool:
    """The tenant shares QaaS's own namespace (the first tenant's, made by the manifests)."""
    return tenant.namespace == (settings.namespace or "default")


async def provision(cluster: Cluster, tenant: Tenant, settings: Settings) -> bool:
    """Make ``tenant``'s namespace, RoleBinding, ResourceQuota and NetworkPolicy what they
    should be (create them, or replace the quota and policy with the tenant's current limits);
    True if the namespace was created. Idempotent.

    QaaS's own namespace gets no quota unless this call made it: QaaS's own pod lives there.
    """
    labels = tenant_namespace_labels(tenant.name, settings.instance)
    created = await cluster.ensure_namespace(tenant.namespace, labels)
    with_quota = created or not own_namespace(tenant, settings)
    for obj in tenant_objects(tenant, settings, with_quota=with_quota)[1:]:
        kind = _KINDS[obj["kind"]]
        await _create_or_replace(cluster, kind, tenant.namespace, obj,
                                 replace=kind is not ROLE_BINDINGS)  # fmt: skip
    if created:
        log.info("created namespace %s for tenant %s", tenant.namespace, tenant.name)
    return created


_KINDS = {kind.kind: kind for kind in (ROLE_BINDINGS, RESOURCE_QUOTAS, NETWORK_POLICIES)}


async def _create_or_replace(
    cluster: Cluster, kind: ResourceKind, namespace: str, obj: Obj, *, replace: bool = True
) -> None:
    api = cluster.resource(kind, namespace)
    try:
        await api.create(obj)
    except Conflict:  # there already
        if replace:
            await api.replace(obj["metadata"]["name"], obj)


class TenantNamespaces:
    def __init__(
        self, cluster: Cluster, settings: Settings, on_ready: Callable[[str], None]
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.auto = auto_provisioning(settings)
        # Called with every namespace made ready (the control loop starts its pod informer).
        self.on_ready = on_ready
        self._ready: set[str] = set()

    def forget(self, namespace: str) -> None:
        """Check the namespace again on the next pass (it failed: deleted by hand, ...)."""
        self._ready.discard(namespace)

    def retain(self, namespaces: set[str]) -> None:
        """Forget the ready namespaces not in ``namespaces`` (their tenants are gone)."""
        self._ready &= namespaces

    async def prepare(self, tenant: Tenant) -> None:
        """Provision the tenant's namespace (auto) or check it is provisioned (admin: raises
        ``NotProvisioned`` saying what the operator must run)."""
        if tenant.namespace in self._ready:
            return
        if self.auto:
            await provision(self.cluster, tenant, self.settings)
        else:
            await self._check(tenant)
        self._ready.add(tenant.namespace)
        self.on_ready(tenant.namespace)

    async def _check(self, tenant: Tenant) -> None:
        try:
            await self.cluster.resource(NETWORK_POLICIES, tenant.namespace).get(POLICY_NAME)
        except (Forbidden, NotFound):
            raise NotProvisioned(
                f"namespace {tenant.namespace} of tenant {tenant.name} is not provisioned "
                f"(QAAS_TENANT_PROVISIONING=admin): an administrator runs "
                f"`qaas tenant create {tenant.name}`"
            ) from None
