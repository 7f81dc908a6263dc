"""The manifests apply to a real API server, and their Role is enough for QaaS, and no more.

QaaS runs here outside the cluster but as its ServiceAccount (that account's own token), with
the sandbox's RBAC on, through the whole flow: create a network, add a peer, watch both run,
delete, leave nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings, load_settings
from app.domain.enums import Role
from app.server import create_app
from app.services.tenancy import create_token
from tests.helpers import GraphQLClient, eventually
from tests.manifests.conftest import ROOT, SERVICE_ACCOUNT, kubectl

pytestmark = pytest.mark.timeout(300)

NETWORK = """
query($id: ID!) { network(id: $id) { status
  nodes { edges { node { name status statusHistory { status } } } } } }
"""


def test_overlays_apply_to_the_cluster(kubeconfig: Path, qaas_applied: str) -> None:
    listed = kubectl(kubeconfig, "-n", qaas_applied, "get",
                     "serviceaccount,role,rolebinding,configmap,service,deployment",
                     "-o", "name").stdout.split()  # fmt: skip
    assert {
        "serviceaccount/qaas",
        "rolebinding.rbac.authorization.k8s.io/qaas", "configmap/qaas-config", "service/qaas",
        "deployment.apps/qaas", "role.rbac.authorization.k8s.io/qaas-leader",
        "rolebinding.rbac.authorization.k8s.io/qaas-leader",
    } <= set(listed)  # fmt: skip
    deployment = json.loads(
        kubectl(kubeconfig, "-n", qaas_applied, "get", "deployment", "qaas", "-o", "json").stdout
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["initContainers"][0]["args"] == ["migrate"]


def _can(kubeconfig: Path, *request: str) -> bool:
    result = kubectl(kubeconfig, "auth", "can-i", *request, f"--as={SERVICE_ACCOUNT}",
                     check=False)  # fmt: skip
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (("create", "services", "-n", "qaas"), True),
        (("update", "statefulsets.apps", "-n", "qaas"), True),
        (("delete", "persistentvolumeclaims", "-n", "qaas"), True),
        (("delete", "deployments.apps", "-n", "qaas"), True),  # nodes made before StatefulSets
        (("watch", "pods", "-n", "qaas"), True),
        (("get", "networkpolicies.networking.k8s.io/qaas-tenant", "-n", "qaas"), True),
        # Provisioning a tenant is an administrator's act (`qaas tenant create`): QaaS holds
        # no cluster-scoped right, and the two-step escalation (bind qaas-tenant to itself in
        # kube-system, then run workloads there) fails at its first step.
        (("create", "rolebindings.rbac.authorization.k8s.io", "-n", "kube-system"), False),
        (("create", "rolebindings.rbac.authorization.k8s.io", "-n", "qaas-someone"), False),
        (("create", "rolebindings.rbac.authorization.k8s.io", "-n", "qaas"), False),
        (("bind", "clusterroles.rbac.authorization.k8s.io/qaas-tenant"), False),
        (("create", "deployments.apps", "-n", "kube-system"), False),
        (("create", "statefulsets.apps", "-n", "kube-system"), False),
        (("get", "namespaces/default"), False),
        (("create", "namespaces"), False),
        (("create", "resourcequotas", "-n", "qaas"), False),
        (("update", "resourcequotas", "-n", "qaas"), False),
        (("create", "networkpolicies.networking.k8s.io", "-n", "qaas"), False),
        (("delete", "networkpolicies.networking.k8s.io", "-n", "qaas"), False),
        (("list", "networkpolicies.networking.k8s.io", "-n", "qaas"), False),
        (("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"), False),
        (("bind", "clusterroles.rbac.authorization.k8s.io/admin"), False),
        (("delete", "namespaces"), False),
        (("update", "namespaces/qaas"), False),
        (("update", "rolebindings.rbac.authorization.k8s.io", "-n", "qaas"), False),
        (("get", "secrets", "-n", "qaas"), False),
        (("list", "secrets", "-n", "qaas"), False),
        (("create", "pods", "--subresource=exec", "-n", "qaas"), False),
        (("get", "pods", "--subresource=log", "-n", "qaas"), True),  # Node.logs
        (("create", "pods", "--subresource=attach", "-n", "qaas"), False),
        (("create", "pods", "--subresource=portforward", "-n", "qaas"), False),
        (("get", "pods", "-n", "qaas"), False),
        (("create", "pods", "-n", "qaas"), False),
        (("patch", "services", "-n", "qaas"), False),
        (("watch", "statefulsets.apps", "-n", "qaas"), False),
        (("create", "deployments.apps", "-n", "qaas"), False),
        (("create", "persistentvolumeclaims", "-n", "qaas"), False),
        (("create", "deployments.apps", "-n", "default"), False),
        (("delete", "services", "-n", "default"), False),
        (("list", "pods", "-n", "kube-system"), False),
        (("list", "nodes"), False),
        (("create", "roles.rbac.authorization.k8s.io", "-n", "qaas"), False),
        # Leader election: the Lease in QaaS's namespace only, and no more than it needs.
        (("create", "leases.coordination.k8s.io", "-n", "qaas"), True),
        (("get", "leases.coordination.k8s.io/qaas-control", "-n", "qaas"), True),
        (("update", "leases.coordination.k8s.io/qaas-control", "-n", "qaas"), True),
        (("update", "leases.coordination.k8s.io/other", "-n", "qaas"), False),
        (("delete", "leases.coordination.k8s.io/qaas-control", "-n", "qaas"), False),
        (("patch", "leases.coordination.k8s.io/qaas-control", "-n", "qaas"), False),
        (("list", "leases.coordination.k8s.io", "-n", "qaas"), False),
        (("watch", "leases.coordination.k8s.io", "-n", "qaas"), False),
        (("create", "leases.coordination.k8s.io", "-n", "qaas-someone"), False),
        (("get", "leases.coordination.k8s.io/qaas-control", "-n", "kube-system"), False),
        (("update", "leases.coordination.k8s.io/qaas-control", "-n", "kube-node-lease"), False),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else str(value),
)
def test_service_account_may_do_only_what_the_role_grants(
    kubeconfig: Path, qaas_applied: str, request_: tuple[str, ...], allowed: bool
) -> None:
    assert _can(kubeconfig, *request_) is allowed


def test_can_i_list_shows_exactly_the_intended_rules(kubeconfig: Path, qaas_applied: str) -> None:
    table = kubectl(kubeconfig, "auth", "can-i", "--list", f"--as={SERVICE_ACCOUNT}",
                    "-n", qaas_applied).stdout.splitlines()  # fmt: skip
    rules: dict[str, set[str]] = {}
    for line in table[1:]:  # Resources  Non-Resource URLs  Resource Names  Verbs
        if line.startswith(" "):
            continue  # non-resource URLs every authenticated user may GET (/api, /version, ...)
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        rules.setdefault(resource, set()).update(verbs)
    assert rules == {
        "services": {"create", "get", "list", "update", "delete"},
        "statefulsets.apps": {"create", "get", "list", "update", "delete"},
        "persistentvolumeclaims": {"list", "delete"},
        "deployments.apps": {"list", "delete"},
        "pods": {"list", "watch"},
        "pods/log": {"get"},
        "networkpolicies.networking.k8s.io": {"get"},  # resourceNames [qaas-tenant]
        "leases.coordination.k8s.io": {"create", "get", "update"},  # get, update: [qaas-control]
        # Every authenticated user may ask what it may do (system:basic-user).
        "selfsubjectaccessreviews.authorization.k8s.io": {"create"},
        "selfsubjectrulesreviews.authorization.k8s.io": {"create"},
    }


def test_nothing_is_writable_in_kube_system(kubeconfig: Path, qaas_applied: str) -> None:
    """The namespace the old escalation went through: the runtime account may only ask what it
    may do (what every authenticated user may), nothing else."""
    table = kubectl(kubeconfig, "auth", "can-i", "--list", f"--as={SERVICE_ACCOUNT}",
                    "-n", "kube-system").stdout.splitlines()  # fmt: skip
    resources = {line.split()[0] for line in table[1:] if not line.startswith(" ")}
    assert resources == {
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    }


def test_the_token_is_refused_a_secret(service_account_kubeconfig: Path) -> None:
    result = kubectl(service_account_kubeconfig, "-n", "qaas", "get", "secrets", check=False)
    assert result.returncode != 0
    assert "forbidden" in result.stderr.lower()


async def _drift_and_repair(kubeconfig: Path, network: str) -> None:
    def run(*args: str) -> str:
        return kubectl(kubeconfig, "-n", "qaas", *args).stdout

    service, workload = f"{network}-coordinator", f"{network}-peer-1"
    spec_hash = "jsonpath={.metadata.annotations.qaas\\.dev/spec-hash}"
    wanted = await asyncio.to_thread(run, "get", "statefulset", workload, "-o", spec_hash)
    await asyncio.to_thread(run, "label", "service", service, "app.kubernetes.io/managed-by-")
    await asyncio.to_thread(run, "annotate", "--overwrite", "statefulset", workload,
                            "qaas.dev/spec-hash=drifted")  # fmt: skip

    async def repaired() -> bool:
        label = "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}"
        owner = await asyncio.to_thread(run, "get", "service", service, "-o", label)
        current = await asyncio.to_thread(run, "get", "statefulset", workload, "-o", spec_hash)
        return owner == "qaas" and current == wanted

    await eventually(repaired, within=30, every=0.3)


@pytest.fixture
def as_service_account(service_account_kubeconfig: Path, database_url: str) -> Settings:
    """QaaS's settings in the cluster, but acting from here with the ServiceAccount's token."""
    return load_settings(
        database_url=database_url, kubeconfig=str(service_account_kubeconfig),
        cluster="kubeconfig", namespace="qaas", resync_seconds=0.5, node_start_deadline=60,
        service_account="qaas:qaas", chain_probe="off",  # simulated pods: no chain
        tenant_provisioning="admin",  # as the manifests say: it may not provision tenants
    )  # fmt: skip


async def _tenant_create(kubeconfig: Path, settings: Settings, name: str) -> None:
    """`qaas tenant create NAME` as an administrator runs it: the admin kubeconfig, the
    installation's settings (its database, namespace, ServiceAccount)."""
    env = {
        "QAAS_DATABASE_URL": settings.database_url,
        "QAAS_NAMESPACE": "qaas",
        "QAAS_SERVICE_ACCOUNT": "qaas:qaas",
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "app.cli.parser", "tenant", "create", name,
                         "--kubeconfig", str(kubeconfig)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


async def test_qaas_completes_the_whole_flow_as_its_service_account(
    kubeconfig: Path,
    as_service_account: Settings,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = as_service_account
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    # The installation's first tenant lives in QaaS's own namespace; an administrator
    # provisions it (the NetworkPolicy QaaS checks for), then makes its first token.
    await _tenant_create(kubeconfig, settings, "acme")
    tenant, _, secret = await create_token(sessions, "acme", Role.ADMIN, settings, "rbac",
                                           create_tenant=False)  # fmt: skip
    assert tenant.namespace == "qaas"
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://qaas.test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as http,
    ):
        api = GraphQLClient(http)
        created = (await api.data(
            "mutation($n: String!) { networkCreate(input: {name: $n, consensus: RAFT}) {"
            " network { id } userErrors { message } } }", n=name,
        ))["networkCreate"]  # fmt: skip
        assert created["userErrors"] == []
        network_id = created["network"]["id"]
        added = (await api.data(
            "mutation($id: ID!) { nodeAdd(input: {networkId: $id, name: \"peer-1\"}) {"
            " node { id } userErrors { message } } }", id=network_id,
        ))["nodeAdd"]  # fmt: skip
        assert added["userErrors"] == []

        async def both_running() -> list[dict[str, Any]] | None:
            network = (await api.data(NETWORK, id=network_id))["network"]
            nodes = [edge["node"] for edge in network["nodes"]["edges"]]
            running = len(nodes) == 2 and all(n["status"] == "RUNNING" for n in nodes)
            return nodes if running and network["status"] == "RUNNING" else None

        nodes = await eventually(both_running, within=90, every=0.3)
        assert {n["name"] for n in nodes} == {"coordinator", "peer-1"}
        for node in nodes:
            assert [change["status"] for change in node["statusHistory"]][-1] == "RUNNING"

        # The rarer paths: a Service QaaS cannot find by label is created again (409), read
        # (get) and replaced (update); a drifted StatefulSet is replaced (update).
        await _drift_and_repair(kubeconfig, name)

        deleted = (await api.data(
            "mutation($id: ID!) { networkDelete(input: {id: $id}) { userErrors { message } } }",
            id=network_id,
        ))["networkDelete"]  # fmt: skip
        assert deleted["userErrors"] == []

        async def nothing_left() -> bool:
            result = await asyncio.to_thread(
                kubectl, kubeconfig, "-n", "qaas", "get", "all",
                "-l", "app.kubernetes.io/managed-by=qaas", "-o", "name",
            )  # fmt: skip
            gone = (await api.data(NETWORK, id=network_id))["network"] is None
            return gone and result.stdout.strip() == ""

        await eventually(nothing_left, within=90, every=0.5)
    # Any call the Role refused would have been logged by the reconciler or the informer.
    refused = [r.getMessage() for r in caplog.records if "forbidden" in r.getMessage().lower()]
    assert refused == []


async def test_a_second_tenant_gets_its_own_namespace_as_the_service_account(
    kubeconfig: Path,
    as_service_account: Settings,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = as_service_account
    await _tenant_create(kubeconfig, settings, "first")  # owns `qaas`
    other = f"t{uuid.uuid4().hex[:6]}"
    await _tenant_create(kubeconfig, settings, other)
    tenant, _, secret = await create_token(sessions, other, Role.MEMBER, settings, "second",
                                           create_tenant=False)  # fmt: skip
    assert tenant.namespace == f"qaas-{other}"
    application = create_app(settings)
    try:
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://qaas.test",
                headers={"Authorization": f"Bearer {secret}"},
            ) as http,
        ):  # fmt: skip
            api = GraphQLClient(http)
            created = (await api.data(
                'mutation { networkCreate(input: {name: "far"}) { network { id } } }'
            ))["networkCreate"]  # fmt: skip

            async def running() -> bool:
                network = (await api.data(NETWORK, id=created["network"]["id"]))["network"]
                return bool(network["status"] == "RUNNING")

            await eventually(running, within=60, every=0.3)
        bindings = json.loads(kubectl(kubeconfig, "-n", tenant.namespace, "get", "rolebinding",
                                      "qaas", "-o", "json").stdout)  # fmt: skip
        assert bindings["roleRef"]["name"] == "qaas-tenant"
        kubectl(kubeconfig, "-n", tenant.namespace, "get", "resourcequota", "qaas-tenant")
        kubectl(kubeconfig, "-n", tenant.namespace, "get", "networkpolicy", "qaas-tenant")
    finally:
        await asyncio.to_thread(kubectl, kubeconfig, "delete", "namespace", f"qaas-{other}",
                                "--wait=false", check=False)  # fmt: skip
    refused = [r.getMessage() for r in caplog.records if "forbidden" in r.getMessage().lower()]
    assert refused == []
