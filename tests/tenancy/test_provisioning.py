"""Tenants as an administrator's act: `qaas tenant create|list|update|delete` against the
sandbox and both databases; the reconciler in admin mode waiting for a tenant's namespace to
be provisioned; a deleted tenant stopping nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes_asyncio import client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.cli import main
from app.cluster.client import Cluster
from app.cluster.connect import ClusterTarget, connect
from app.cluster.objects import network_policy
from app.config import Settings
from app.control.namespaces import provision
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus, NodeStatus, Role
from app.events.bus import InProcessBus
from app.services.tenancy import create_token
from app.services.tenant_admin import delete_tenant
from app.services.token_use import TokenUse
from app.store import tenants
from app.store.models import ApiToken, Network, Node, Tenant
from tests.conftest import CallerTenant
from tests.helpers import Writes, eventually, holds

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, kubeconfig: Path, namespace: str
) -> Path:
    """The settings `qaas` reads from its environment; returns the admin kubeconfig."""
    monkeypatch.setenv("QAAS_DATABASE_URL", database_url)
    monkeypatch.setenv("QAAS_NAMESPACE", namespace)
    monkeypatch.setenv("QAAS_SERVICE_ACCOUNT", "qaas:qaas")
    monkeypatch.setenv("QAAS_CLUSTER", "kubeconfig")
    monkeypatch.delenv("QAAS_ADMIN_KUBECONFIG", raising=False)
    return kubeconfig


async def qaas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the `qaas` command in-process (in a thread: it runs its own event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    said = capsys.readouterr()
    return code, said.out, said.err


async def _read(kube_api: client.ApiClient, kind: str, namespace: str, name: str) -> Any:
    apis = {
        "quota": client.CoreV1Api(kube_api).read_namespaced_resource_quota,
        "binding": client.RbacAuthorizationV1Api(kube_api).read_namespaced_role_binding,
        "policy": client.NetworkingV1Api(kube_api).read_namespaced_network_policy,
    }
    return kube_api.sanitize_for_serialization(await apis[kind](name, namespace))


async def _count(sessions: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_tenant_lifecycle_through_the_command_line(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    sessions: async_sessionmaker[AsyncSession],
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    admin = ["--kubeconfig", str(cli_env)]
    # The first tenant shares QaaS's namespace: a policy there, no quota (QaaS's pod is there).
    code, out, err = await qaas(capsys, "tenant", "create", "first", *admin)
    assert code == 0, err
    assert f"namespace {namespace}" in out
    assert (await _read(kube_api, "policy", namespace, "qaas-tenant"))["spec"] == (
        network_policy("qaas")["spec"]
    )
    with pytest.raises(client.ApiException):
        await _read(kube_api, "quota", namespace, "qaas-tenant")

    name = f"pv{uuid.uuid4().hex[:6]}"
    home = f"qaas-{name}"
    try:
        code, out, err = await qaas(capsys, "tenant", "create", name, "--max-networks", "2",
                                    "--max-nodes", "4", *admin)  # fmt: skip
        assert code == 0, err
        assert f"tenant {name} created (namespace {home}, max 2 networks, 4 nodes)" in out
        labels = (await client.CoreV1Api(kube_api).read_namespace(home)).metadata.labels
        assert labels["qaas.dev/tenant"] == name
        binding = await _read(kube_api, "binding", home, "qaas")
        assert binding["roleRef"]["name"] == "qaas-tenant"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qaas",
                                        "namespace": "qaas"}]  # fmt: skip
        assert (await _read(kube_api, "quota", home, "qaas-tenant"))["spec"]["hard"]["pods"] == "8"
        policy = await _read(kube_api, "policy", home, "qaas-tenant")
        assert policy["spec"] == network_policy("qaas")["spec"]

        # Again: nothing new, everything still provisioned.
        code, out, _ = await qaas(capsys, "tenant", "create", name, *admin)
        assert (code, "exists; namespace provisioned again" in out) == (0, True)

        # Where only QaaS's pod reaches the database: the same objects, printed for kubectl.
        code, out, err = await qaas(capsys, "tenant", "create", name, "--manifests")
        assert code == 0, err
        printed = list(yaml.safe_load_all(out))
        assert [(o["kind"], o["metadata"].get("namespace")) for o in printed] == [
            ("Namespace", None), ("RoleBinding", home), ("ResourceQuota", home),
            ("NetworkPolicy", home),
        ]  # fmt: skip
        assert printed[3]["spec"] == network_policy("qaas")["spec"]

        # A typo in `token create` is refused, and creates nothing.
        tenants_before = await _count(sessions, Tenant)
        code, out, err = await qaas(capsys, "token", "create", "--tenant", f"{name}x",
                                    "--role", "admin")  # fmt: skip
        assert code == 2
        assert f"qaas tenant create {name}x" in err
        assert "--create-tenant" in err
        assert await _count(sessions, Tenant) == tenants_before
        code, out, err = await qaas(capsys, "token", "create", "--tenant", name, "--role",
                                    "member")  # fmt: skip
        assert code == 0, err
        token_id = out.split("; token ")[1].split(",")[0]
        code, out, _ = await qaas(capsys, "token", "list", "--tenant", name)
        assert (code, "MEMBER  active   never used" in out) == (0, True), out
        use = TokenUse(sessions, every=60)
        use.used(token_id)  # what authenticating with it records
        await use.stop()
        code, out, _ = await qaas(capsys, "token", "list", "--tenant", name)
        assert re.search(r"MEMBER  active   used 20\d\d-\d\d-\d\d \d\d:\d\dZ", out), out

        # Limits: update changes the row and the namespace's quota; not below what it has.
        async with sessions() as session:
            tenant = await tenants.tenant_named(session, name)
        assert tenant is not None
        created = await Writes(sessions).create_network(tenant.id, "chain", Consensus.RAFT)
        assert created.network is not None
        code, _, err = await qaas(capsys, "tenant", "update", name, "--max-nodes", "6", *admin)
        assert code == 0, err
        assert (await _read(kube_api, "quota", home, "qaas-tenant"))["spec"]["hard"]["pods"] == "12"
        code, _, err = await qaas(capsys, "tenant", "update", name, "--max-networks", "0", *admin)
        assert code == 2
        assert "must be 1 to" in err

        code, out, _ = await qaas(capsys, "tenant", "list")
        line = next(row for row in out.splitlines() if row.startswith(name))
        assert line.split()[1:] == [home, "1/2", "1/6", "1"]

        # Delete: refused while it has a network; --force takes rows, tokens and namespace.
        code, _, err = await qaas(capsys, "tenant", "delete", name, *admin)
        assert code == 2
        assert "--force" in err
        assert await _count(sessions, Network) == 1
        code, out, err = await qaas(capsys, "tenant", "delete", name, "--force", *admin)
        assert code == 0, err
        assert (await _count(sessions, Network), await _count(sessions, Node)) == (0, 0)
        async with sessions() as session:
            assert await tenants.tenant_named(session, name) is None
            left = await session.scalar(select(func.count()).select_from(ApiToken)
                                        .where(ApiToken.tenant_id == tenant.id))  # fmt: skip
        assert left == 0

        async def namespace_going() -> bool:
            try:
                found = await client.CoreV1Api(kube_api).read_namespace(home)
            except client.ApiException as error:
                return bool(error.status == 404)
            return bool(found.status.phase == "Terminating")

        await eventually(namespace_going, within=30)
        code, _, err = await qaas(capsys, "tenant", "delete", name, *admin)
        assert code == 2
        assert f'no tenant named "{name}"' in err
    finally:
        try:
            await client.CoreV1Api(kube_api).delete_namespace(home)
        except client.ApiException:
            pass


@pytest.fixture
async def admin_cluster(kubeconfig: Path, namespace: str) -> AsyncIterator[Cluster]:
    cluster = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    yield cluster
    await cluster.close()


async def test_admin_mode_nodes_wait_for_the_administrator(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    admin_cluster: Cluster,
    namespace: str,
) -> None:
    admin_mode = settings.model_copy(update={"tenant_provisioning": "admin"})
    tenant, _, _ = await create_token(sessions, "acme", Role.ADMIN, admin_mode)
    reconciler = Reconciler(sessions, admin_cluster, admin_mode, InProcessBus())
    created = await Writes(sessions).create_network(tenant.id, "wait", Consensus.RAFT)
    assert created.network is not None

    for _ in range(3):
        await reconciler.reconcile_once()  # not provisioned is not a failure of QaaS
    async with sessions() as session:
        node = await session.scalar(select(Node))
    assert node is not None
    assert node.status is NodeStatus.PENDING
    assert node.status_reason is not None
    assert "not provisioned" in node.status_reason
    assert "`qaas tenant create acme`" in node.status_reason
    assert not node.has_service  # nothing was made in the namespace
    services = await client.CoreV1Api(admin_cluster.api_client).list_namespaced_service(namespace)
    assert services.items == []

    await provision(admin_cluster, tenant, admin_mode)  # what `qaas tenant create` runs

    async def on_its_way() -> Node | None:
        await reconciler.reconcile_once()
        async with sessions() as session:
            found = await session.scalar(select(Node))
        return found if found is not None and found.has_service else None

    ready = await eventually(on_its_way, within=30)
    assert "not provisioned" not in (ready.status_reason or "")


async def test_a_deleted_tenant_stops_its_watch_and_nothing_fails(
    app: Starlette,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: CallerTenant,
    kube_api: client.ApiClient,
) -> None:
    other = f"gone{uuid.uuid4().hex[:6]}"
    row, _, _ = await create_token(sessions, other, Role.ADMIN, settings)
    created = await Writes(sessions).create_network(row.id, "doomed", Consensus.RAFT)
    assert created.network is not None
    control = app.state.control
    control.kick()
    await holds(lambda: row.namespace in control.informers, within=30)

    async with sessions.begin() as session:
        await delete_tenant(session, other, force=True, keep_namespace=tenant.namespace)
    await client.CoreV1Api(kube_api).delete_namespace(row.namespace)
    control.kick()
    await holds(lambda: row.namespace not in control.informers, within=30)
    passes = control.reconciler.passes
    await holds(lambda: control.reconciler.passes >= passes + 2, within=30)
    assert control.reconciler.failing_since is None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://qaas.test") as http:  # fmt: skip
        assert (await http.get("/readyz")).status_code == 200
