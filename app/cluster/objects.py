"""Builders for the Kubernetes objects of one Quorum node: its Service and its StatefulSet.

The reconciler and ``qaas render`` use these same functions, so what is reviewed is what runs.

Why a StatefulSet of one replica, not a Deployment with a claim of its own: a node's keys and
enode must never run twice. A Deployment's ReplicaSet starts a replacement as soon as the old pod
is marked deleted, even while that pod still runs (on an unreachable Kubernetes node it runs on
until someone confirms it gone): two geth with the same keys. A StatefulSet creates ``<name>-0``
again only once the old ``<name>-0`` is really gone from the API, and it makes the claim itself
from its ``volumeClaimTemplates`` (``data-<name>-0``), so the replacement finds the same data.

Example::

    spec = NodeObjects(network_id="n1", node_id="d1", network="acme", node="coordinator",
                       role=NodeRole.COORDINATOR, consensus=Consensus.RAFT,
                       image="narayanprusty/qnm", service_type="ClusterIP", installation="qaas",
                       storage_size="1Gi", storage_class="")
    service = spec.service()
    statefulset = spec.statefulset(own_ip="10.96.0.20", coordinator_ip=None)
    spec.claim_name   # "data-acme-coordinator-0"
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from app.config import Settings
from app.domain.enums import Consensus, NodeRole
from app.domain.names import object_name
from app.domain.qnm import (
    ARGS,
    DATA_DIRS,
    KEEP_FILES,
    PORTS,
    RPC_PORT,
    WORKING_DIR,
    NodeEnvironment,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
NETWORK_ID = "qaas.dev/network-id"
NODE_ID = "qaas.dev/node-id"
INSTALLATION = "qaas.dev/installation"
SPEC_HASH = "qaas.dev/spec-hash"
CONTAINER = "qnm"
DATA_VOLUME = "data"  # the claim template's name: claims are data-<statefulset>-0

# Readiness: geth's RPC port accepts connections. QNM starts geth with nohup, so a dead geth
# leaves the container running; the probe makes Kubernetes itself call the pod not ready
# (within PERIOD x FAILURES = 30 s) and take it out of its Service's endpoints. A peer's geth
# starts only after its join, so a peer stays not ready until then; nothing restarts it.
READINESS_PROBE: dict[str, Any] = {
    "tcpSocket": {"port": RPC_PORT},
    "initialDelaySeconds": 5,
    "periodSeconds": 10,
    "timeoutSeconds": 3,
    "failureThreshold": 3,
    "successThreshold": 1,
}


TENANT = "qaas.dev/tenant"


def tenant_namespace_labels(tenant: str, installation: str) -> dict[str, str]:
    return {MANAGED_BY: "qaas", INSTALLATION: installation, TENANT: tenant}


def resource_quota(max_nodes: int, max_storage_bytes: int | None = None) -> dict[str, Any]:
    """A tenant namespace's quota: room for its nodes' pods, Services and data claims, nothing
    more.

    Pods get one extra slot per node so a stuck terminating pod does not block its node. A node
    has one claim, which lives exactly as long as its row (the row goes once the claim has);
    ``requests.storage`` allows every node the largest size the API accepts.
    """
    hard = {
        "pods": str(2 * max_nodes),
        "services": str(max_nodes),
        "services.nodeports": str(max_nodes * 8),
        "requests.cpu": f"{max_nodes * 100}m",
        "requests.memory": f"{max_nodes * 256}Mi",
        "persistentvolumeclaims": str(max_nodes),
    }
    if max_storage_bytes is not None:
        hard["requests.storage"] = str(max_nodes * max_storage_bytes)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "qaas-tenant", "labels": {MANAGED_BY: "qaas"}},
        "spec": {"hard": hard},
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


# On the namespace QaaS itself runs in (manifests/qaas/base/namespace.yaml), value: its
# installation. A tenant's NetworkPolicy lets pods of such a namespace reach geth's RPC.
API_HOME = "qaas.dev/api-of"
# The labels of QaaS's own pods (manifests/qaas/base/deployment.yaml).
API_POD = {"app.kubernetes.io/name": "qaas", "app.kubernetes.io/component": "api"}
POLICY_NAME = "qaas-tenant"


def network_policy(installation: str) -> dict[str, Any]:
    """The ingress rules of a tenant namespace's Quorum node pods.

    It selects this installation's node pods (not every pod: the first tenant shares its
    namespace with QaaS itself, whose API must stay reachable). A selected pod accepts only:
    this installation's node pods of the same namespace (the same tenant) on the QNM ports,
    and QaaS's own pods on geth's RPC port (the chain probe). Nothing else, from no other
    namespace. Kubernetes enforces it only with a CNI that implements NetworkPolicy.
    """
    nodes = {MANAGED_BY: "qaas", INSTALLATION: installation}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POLICY_NAME, "labels": {MANAGED_BY: "qaas"}},
        "spec": {
            "podSelector": {"matchLabels": dict(nodes)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": dict(nodes)}}],
                    "ports": [{"protocol": "TCP", "port": p.number} for p in PORTS],
                },
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {API_HOME: installation}},
                            "podSelector": {"matchLabels": dict(API_POD)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": RPC_PORT}],
                },
            ],
        },
    }


def selector_for(installation: str) -> str:
    """The label selector that finds every object this QaaS installation owns."""
    return f"{MANAGED_BY}=qaas,{INSTALLATION}={installation}"


@dataclass(frozen=True)
class NodeObjects:
    """A node's Service and StatefulSet, as QaaS wants them. Build it with ``for_node``, which
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
    storage_size: str = "1Gi"
    storage_class: str = ""  # empty: the cluster's default StorageClass
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
        storage_size: str | None = None,
        storage_class: str | None = None,
    ) -> NodeObjects:
        """The objects of one node, with the installation's image, Service type, label and
        pod annotations from ``settings``, and its network's storage (by default the
        settings')."""
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
            storage_size=storage_size or settings.node_storage_size,
            storage_class=settings.node_storage_class if storage_class is None else storage_class,
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

    @property
    def claim_name(self) -> str:
        """The name the StatefulSet controller gives this node's claim."""
        return f"{DATA_VOLUME}-{self.name}-0"

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
        env = [{"name": k, "value": v} for k, v in environment.as_pairs()]
        env.append({"name": KEEP_FILES, "value": "true"})  # reuse the claim's files at start
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
                        "env": env,
                        "ports": [
                            {"name": p.name, "containerPort": p.number, "protocol": "TCP"}
                            for p in PORTS
                        ],
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                        # QNM's keys, enode and chain live in these folders of its working
                        # directory: on the claim, so a replaced pod comes back as the same node.
                        "volumeMounts": [
                            {
                                "name": DATA_VOLUME,
                                "mountPath": f"{WORKING_DIR}/{folder}",
                                "subPath": folder,
                            }
                            for folder in DATA_DIRS
                        ],
                        "readinessProbe": READINESS_PROBE,
                    }
                ],
            },
        }

    def claim_template(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": self.storage_size}},
        }
        if self.storage_class:  # unset: the DefaultStorageClass admission fills it in
            spec["storageClassName"] = self.storage_class
        # The controller adds the selector's labels; ours let QaaS find and delete the claim.
        return {"metadata": {"name": DATA_VOLUME, "labels": self.labels()}, "spec": spec}

    def statefulset(self, own_ip: str, coordinator_ip: str | None) -> dict[str, Any]:
        template = self.pod_template(own_ip, coordinator_ip)
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {SPEC_HASH: spec_hash(template)},
            },
            "spec": {
                # One replica: a node's identity (keys, enode) must never run twice, and a
                # StatefulSet never starts <name>-0 while the old <name>-0 still exists.
                "replicas": 1,
                "serviceName": self.name,
                # Parallel: with the default OrderedReady, a pod that is not ready (a dead geth,
                # a broken image) blocks the rolling update that would replace it.
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate"},
                "selector": {"matchLabels": self.selector()},
                "template": template,
                "volumeClaimTemplates": [self.claim_template()],
            },
        }


def spec_hash(template: dict[str, Any]) -> str:
    """A short digest of what we asked for, to notice when a StatefulSet has drifted.

    The digest of ``json.dumps(template, sort_keys=True, separators=(",", ":"))``: live objects
    carry it, so it must never change. orjson writes the same text ten times as fast (a pass
    that finds nothing remembered computes one per node: a fifth of it at 10,000 nodes) as long
    as nothing is escaped; where anything is (a quote, a backslash, a character beyond
    printable ASCII, which json escapes and orjson writes as UTF-8), json writes it."""
    canonical = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if not _PLAIN.fullmatch(canonical):
        canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


# Printable ASCII but the backslash: text both encoders write alike.
_PLAIN = re.compile(rb"[ -\[\]-~]*")
