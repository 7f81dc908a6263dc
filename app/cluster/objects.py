"""Builders for the Kubernetes objects of one Quorum node: its Service and its Deployment.

The reconciler and ``qaas render`` use these same functions, so what is reviewed is what runs.

Example::

    spec = NodeObjects(network_id="n1", node_id="d1", network="acme", node="coordinator",
                       role=NodeRole.COORDINATOR, consensus=Consensus.RAFT,
                       image="narayanprusty/qnm", service_type="ClusterIP", installation="qaas")
    service = spec.service()
    deployment = spec.deployment(own_ip="10.96.0.20", coordinator_ip=None)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.domain.enums import Consensus, NodeRole
from app.domain.names import object_name
from app.domain.qnm import ARGS, PORTS, WORKING_DIR, NodeEnvironment

MANAGED_BY = "app.kubernetes.io/managed-by"
NETWORK_ID = "qaas.dev/network-id"
NODE_ID = "qaas.dev/node-id"
INSTALLATION = "qaas.dev/installation"
SPEC_HASH = "qaas.dev/spec-hash"
CONTAINER = "qnm"


TENANT = "qaas.dev/tenant"


def tenant_namespace_labels(tenant: str, installation: str) -> dict[str, str]:
    return {MANAGED_BY: "qaas", INSTALLATION: installation, TENANT: tenant}


def resource_quota(max_nodes: int) -> dict[str, Any]:
    """A tenant namespace's quota: room for its nodes' pods and Services, nothing more.

    Pods get one extra slot per node so a node's Recreate rollout or a stuck terminating pod
    does not block it.
    """
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "qaas-tenant", "labels": {MANAGED_BY: "qaas"}},
        "spec": {
            "hard": {
                "pods": str(2 * max_nodes),
                "services": str(max_nodes),
                "services.nodeports": str(max_nodes * 8),
                "requests.cpu": f"{max_nodes * 100}m",
                "requests.memory": f"{max_nodes * 256}Mi",
            }
        },
    }


def tenant_role_binding(cluster_role: str, service_account: str) -> dict[str, Any]:
    """Grants QaaS's own ServiceAccount (``namespace:name``) ``cluster_role`` in one tenant
    namespace: QaaS holds rights only in the namespaces it made, never cluster-wide."""
    namespace, _, name = service_account.partition(":")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "qaas", "labels": {MANAGED_BY: "qaas"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }  # fmt: skip


def selector_for(installation: str) -> str:
    """The label selector that finds every object this QaaS installation owns."""
    return f"{MANAGED_BY}=qaas,{INSTALLATION}={installation}"


@dataclass(frozen=True)
class NodeObjects:
    """A node's Service and Deployment, as QaaS wants them. Build it with ``for_node``, which
    both the reconciler and ``qaas render`` use, so what a reviewer renders is what runs."""

    network_id: str
    node_id: str
    network: str
    node: str
    role: NodeRole
    consensus: Consensus
    image: str
    service_type: str
    installation: str
    pod_annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_node(
        cls,
        settings: Settings,
        *,
        network_id: str,
        node_id: str,
        network: str,
        node: str,
        role: NodeRole,
        consensus: Consensus,
    ) -> NodeObjects:
        """The objects of one node, with the installation's image, Service type, label and
        pod annotations from ``settings``."""
        return cls(
            network_id=network_id,
            node_id=node_id,
            network=network,
            node=node,
            role=role,
            consensus=consensus,
            image=settings.node_image,
            service_type=settings.node_service_type,
            installation=settings.instance,
            pod_annotations=tuple(sorted(settings.node_pod_annotations.items())),
        )

    @property
    def name(self) -> str:
        return object_name(self.network, self.node)

    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "quorum-node",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": self.role.value.lower(),
            MANAGED_BY: "qaas",
            INSTALLATION: self.installation,
            NETWORK_ID: self.network_id,
            NODE_ID: self.node_id,
            "qaas.dev/network": self.network,
            "qaas.dev/node": self.node,
        }

    def selector(self) -> dict[str, str]:
        return {NODE_ID: self.node_id}

    def service(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "labels": self.labels()},
            "spec": {
                "type": self.service_type,
                "selector": self.selector(),
                "ports": [
                    {"name": p.name, "port": p.number, "targetPort": p.number, "protocol": "TCP"}
                    for p in PORTS
                ],
            },
        }

    def pod_template(self, own_ip: str, coordinator_ip: str | None) -> dict[str, Any]:
        environment = NodeEnvironment(self.node, self.role, self.consensus, own_ip, coordinator_ip)
        metadata: dict[str, Any] = {"labels": self.labels()}
        if self.pod_annotations:
            metadata["annotations"] = dict(self.pod_annotations)
        return {
            "metadata": metadata,
            "spec": {
                # A QNM node never talks to the Kubernetes API: give it no credentials.
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": self.image,
                        "args": ARGS,
                        "workingDir": WORKING_DIR,
                        "env": [{"name": k, "value": v} for k, v in environment.as_pairs()],
                        "ports": [
                            {"name": p.name, "containerPort": p.number, "protocol": "TCP"}
                            for p in PORTS
                        ],
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    }
                ],
            },
        }

    def deployment(self, own_ip: str, coordinator_ip: str | None) -> dict[str, Any]:
        template = self.pod_template(own_ip, coordinator_ip)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {SPEC_HASH: spec_hash(template)},
            },
            "spec": {
                "replicas": 1,
                # A node's identity (keys, enode) must never run twice: stop, then start.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": self.selector()},
                "template": template,
            },
        }


def spec_hash(template: dict[str, Any]) -> str:
    """A short digest of what we asked for, to notice when a Deployment has drifted."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
