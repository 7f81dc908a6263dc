"""The kustomize base and overlays render, with a least-privilege Role and a locked-down pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.cluster.objects import NodeObjects
from app.domain.enums import Consensus, NodeRole
from tests.manifests.conftest import OVERLAYS, ROOT, kustomize

BASE = ROOT / "manifests" / "qaas" / "base"

# What the code calls in a tenant namespace, and nothing more (clusterrole-tenant.yaml) ...
TENANT_RULES = {
    ("", "services"): {"create", "get", "list", "update", "delete"},
    ("apps", "statefulsets"): {"create", "get", "list", "update", "delete"},
    ("", "persistentvolumeclaims"): {"list", "delete"},
    ("apps", "deployments"): {"list", "delete"},  # nodes made before StatefulSets
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},  # Node.logs
    # The admin-mode check that a tenant is provisioned (resourceNames [qaas-tenant]).
    ("networking.k8s.io", "networkpolicies"): {"get"},
}
# Nothing cluster-scoped: provisioning a tenant is `qaas tenant create`, an administrator's act.
# ... and in QaaS's own namespace only, the leader Lease (role-leader.yaml): create any, read and
# update the one named <QAAS_INSTANCE>-control.
LEADER_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "resourceNames": ["qaas-control"], "verbs": ["get", "update"]},
]  # fmt: skip
LEADER_IDENTITY = {
    "name": "QAAS_LEADER_IDENTITY",
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
}


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        if rule["resources"] == ["networkpolicies"]:
            assert rule["resourceNames"] == ["qaas-tenant"]  # it may read that policy only
            rule = {k: v for k, v in rule.items() if k != "resourceNames"}
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no URLs, no other names
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["qaas"]
    result: dict[str, Any] = containers[0]
    return result


@pytest.mark.parametrize("directory", [BASE, OVERLAYS / "sqlite", OVERLAYS / "postgres"],
                         ids=["base", "sqlite", "postgres"])  # fmt: skip
def test_renders_least_privilege_roles(directory: Path) -> None:
    objects = kustomize(directory)
    cluster_scoped = ("Namespace", "ClusterRole", "ClusterRoleBinding")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] not in cluster_scoped} == {
        "qaas"
    }
    (leader,) = [o for o in objects if o["kind"] == "Role"]
    assert leader["metadata"]["name"] == "qaas-leader"
    assert leader["rules"] == LEADER_RULES
    assert f"{_one(objects, 'ConfigMap')['data']['QAAS_INSTANCE']}-control" == "qaas-control"
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    assert set(roles) == {"qaas-tenant"}
    assert _rules(roles["qaas-tenant"]) == TENANT_RULES
    # The tenant role is bound per namespace only; nothing is bound cluster-wide.
    assert [o for o in objects if o["kind"] == "ClusterRoleBinding"] == []
    config = _one(objects, "ConfigMap")["data"]
    assert config["QAAS_TENANT_PROVISIONING"] == "admin"
    # QaaS's pods pass tenants' NetworkPolicies by this label on their namespace.
    home = _one(objects, "Namespace")["metadata"]["labels"]
    assert home["qaas.dev/api-of"] == config["QAAS_INSTANCE"]
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(bindings) == {"qaas", "qaas-leader"}
    rbac = "rbac.authorization.k8s.io"
    assert bindings["qaas"]["roleRef"] == {"apiGroup": rbac, "kind": "ClusterRole",
                                           "name": "qaas-tenant"}  # fmt: skip
    assert bindings["qaas-leader"]["roleRef"] == {"apiGroup": rbac, "kind": "Role",
                                                  "name": "qaas-leader"}  # fmt: skip
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "qaas", "namespace": "qaas"}
        ]


@pytest.mark.parametrize("overlay", ["sqlite", "postgres"])
def test_qaas_runs_as_a_locked_down_non_root_pod(overlay: str) -> None:
    objects = kustomize(OVERLAYS / overlay)
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["serviceAccountName"] == "qaas"
    assert pod["automountServiceAccountToken"] is True  # QaaS needs its token, nodes do not
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for each in [container, *pod.get("initContainers", [])]:
        assert each["image"] == "qaas:latest"
        assert each["command"] == ["qaas"]
        assert each["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"requests", "limits"} <= set(each["resources"])
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"] == [{"configMapRef": {"name": "qaas-config"}}]
    service = _one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    assert service["spec"]["type"] == "ClusterIP"


def test_configuration_matches_in_cluster_mode() -> None:
    config = _one(kustomize(OVERLAYS / "sqlite"), "ConfigMap")
    assert config["metadata"]["name"] == "qaas-config"
    assert config["data"] == {
        "QAAS_CLUSTER": "in-cluster",
        "QAAS_NAMESPACE": "qaas",
        "QAAS_PRODUCTION": "true",
        "QAAS_NODE_SERVICE_TYPE": "ClusterIP",
        "QAAS_NODE_IMAGE": "narayanprusty/qnm",
        "QAAS_INSTANCE": "qaas",
        "QAAS_SERVICE_ACCOUNT": "qaas:qaas",
        "QAAS_TENANT_PROVISIONING": "admin",
        "QAAS_LOG_LEVEL": "INFO",
        "QAAS_DATABASE_URL": "sqlite+aiosqlite:////data/qaas.db",
        "QAAS_LEADER_ELECTION": "off",
    }


def test_sqlite_overlay_is_one_pod_on_a_volume() -> None:
    objects = kustomize(OVERLAYS / "sqlite")
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    claim = _one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["namespace"] == "qaas"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in (
        volumes
    )
    assert {"name": "data", "mountPath": "/data"} in _container(objects)["volumeMounts"]


def test_postgres_overlay_reads_the_url_from_a_secret_and_migrates_first() -> None:
    objects = kustomize(OVERLAYS / "postgres")
    assert not [o for o in objects if o["kind"] == "Secret"]  # the operator creates it
    from_secret = {
        "name": "QAAS_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "qaas-database", "key": "url"}},
    }
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    assert migrate["args"] == ["migrate"]
    assert migrate["env"] == [from_secret]
    assert sorted(_container(objects)["env"], key=str) == sorted(
        [from_secret, LEADER_IDENTITY], key=str
    )
    assert "QAAS_DATABASE_URL" not in _one(objects, "ConfigMap")["data"]


def test_postgres_overlay_runs_two_replicas_that_roll_safely() -> None:
    objects = kustomize(OVERLAYS / "postgres")
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    # One replica always serves; the Lease, not the strategy, keeps a second leader out.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # fmt: skip
    assert _one(objects, "ConfigMap")["data"]["QAAS_LEADER_ELECTION"] == "on"
    budget = _one(objects, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == "qaas"
    assert budget["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }


def test_quorum_node_pods_get_no_service_account_token() -> None:
    for role in NodeRole:
        spec = NodeObjects(
            network_id="n", node_id="d", network="acme", node="x", role=role,
            consensus=Consensus.RAFT, image="qnm", service_type="ClusterIP", installation="qaas",
        )  # fmt: skip
        template = spec.statefulset("10.0.0.2", "10.0.0.1")["spec"]["template"]
        assert template["spec"]["automountServiceAccountToken"] is False
