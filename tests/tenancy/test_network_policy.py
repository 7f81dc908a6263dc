"""A tenant namespace's NetworkPolicy: its exact rules, and what they let through when read
the way Kubernetes reads them (the sandbox does not enforce policies; a CNI such as Calico or
Cilium does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from app.cluster.objects import NodeObjects, network_policy
from app.domain.enums import Consensus, NodeRole
from app.domain.qnm import PORTS, RPC_PORT

INSTALLATION = "qaas"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector: every matchLabels pair and every matchExpressions term holds ({}
    selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for term in selector.get("matchExpressions", []):
        key, operator, values = term["key"], term["operator"], term.get("values", [])
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)


def _peer_allows(peer: dict[str, Any], policy_namespace: str, source: Pod) -> bool:
    """One ``from`` entry: a podSelector alone means pods of the policy's own namespace; a
    namespaceSelector (with or without a podSelector, ANDed) means pods of those namespaces."""
    if "ipBlock" in peer:
        return False  # our sources are pods; the policy has no ipBlock anyway
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector", {}), source.labels)


def allowed(policies: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """May ``source`` open a TCP connection to ``target`` on ``port``, given the policies of
    the target's namespace? A pod no ingress policy selects accepts everything; a selected pod
    accepts only what some rule of some selecting policy allows (rules add up, never deny)."""
    selecting = [
        p for p in policies
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], target.labels)
    ]  # fmt: skip
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            ports = rule.get("ports")
            from_ok = not peers or any(
                _peer_allows(peer, target.namespace, source) for peer in peers
            )
            port_ok = not ports or any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") in (None, port) for p in ports
            )
            if from_ok and port_ok:
                return True
    return False


def _node(namespace: str, network: str, node: str, installation: str = INSTALLATION) -> Pod:
    labels = NodeObjects(
        network_id=f"id-{network}", node_id=f"id-{network}-{node}", network=network, node=node,
        role=NodeRole.PEER, consensus=Consensus.RAFT, image="qnm", service_type="ClusterIP",
        installation=installation,
    ).labels()  # fmt: skip
    return Pod(namespace, labels, {"kubernetes.io/metadata.name": namespace})


ACME = "qaas-acme"
POLICIES = [network_policy(INSTALLATION)]
QAAS_POD = Pod("qaas", {"app.kubernetes.io/name": "qaas", "app.kubernetes.io/component": "api"},
               {"qaas.dev/api-of": INSTALLATION})  # fmt: skip


def test_the_policy_is_exactly_this() -> None:
    nodes = {"app.kubernetes.io/managed-by": "qaas", "qaas.dev/installation": INSTALLATION}
    assert network_policy(INSTALLATION) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "qaas-tenant", "labels": {"app.kubernetes.io/managed-by": "qaas"}},
        "spec": {
            "podSelector": {"matchLabels": nodes},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": nodes}}],
                    "ports": [{"protocol": "TCP", "port": p.number} for p in PORTS],
                },
                {
                    "from": [{
                        "namespaceSelector": {"matchLabels": {"qaas.dev/api-of": INSTALLATION}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "qaas",
                                                        "app.kubernetes.io/component": "api"}},
                    }],
                    "ports": [{"protocol": "TCP", "port": 20010}],
                },
            ],
        },
    }  # fmt: skip


@pytest.mark.parametrize("port", [p.number for p in PORTS])
def test_nodes_of_one_network_reach_each_other_on_every_qnm_port(port: int) -> None:
    coordinator, peer = _node(ACME, "chain", "coordinator"), _node(ACME, "chain", "peer-1")
    assert allowed(POLICIES, peer, coordinator, port)
    assert allowed(POLICIES, coordinator, peer, port)


def test_other_ports_are_closed_even_to_the_same_network() -> None:
    coordinator, peer = _node(ACME, "chain", "coordinator"), _node(ACME, "chain", "peer-1")
    assert not allowed(POLICIES, peer, coordinator, 22)
    assert not allowed(POLICIES, peer, coordinator, 8080)


def test_networks_of_one_tenant_may_reach_each_other() -> None:
    # A decision: a tenant's networks are one trust domain (networkJoin may join a peer to the
    # tenant's own other network); isolation is between tenants.
    assert allowed(POLICIES, _node(ACME, "b", "peer-1"), _node(ACME, "a", "coordinator"), 20000)


@pytest.mark.parametrize("port", [p.number for p in PORTS])
def test_another_tenants_nodes_are_refused(port: int) -> None:
    intruder = _node("qaas-mallory", "evil", "peer-1")
    assert not allowed(POLICIES, intruder, _node(ACME, "chain", "coordinator"), port)


def test_a_pod_of_another_installation_or_none_is_refused() -> None:
    target = _node(ACME, "chain", "coordinator")
    stranger = Pod(ACME, {"app": "debug"}, {"kubernetes.io/metadata.name": ACME})
    assert not allowed(POLICIES, stranger, target, RPC_PORT)  # same namespace, not a node
    other_install = _node(ACME, "chain", "peer-9", installation="other")
    assert not allowed(POLICIES, other_install, target, RPC_PORT)
    elsewhere = Pod("default", {"app": "curl"}, {"kubernetes.io/metadata.name": "default"})
    assert not allowed(POLICIES, elsewhere, target, RPC_PORT)


def test_qaas_reaches_geth_rpc_only() -> None:
    target = _node(ACME, "chain", "coordinator")
    assert allowed(POLICIES, QAAS_POD, target, RPC_PORT)
    for port in [p.number for p in PORTS if p.number != RPC_PORT]:
        assert not allowed(POLICIES, QAAS_POD, target, port)
    # Only QaaS's API pods of a namespace labelled as QaaS's home: not any pod there ...
    other_pod = Pod("qaas", {"app": "tool"}, QAAS_POD.namespace_labels)
    assert not allowed(POLICIES, other_pod, target, RPC_PORT)
    # ... and not a pod dressed as QaaS in a namespace without the label.
    impostor = Pod("qaas-mallory", QAAS_POD.labels, {"kubernetes.io/metadata.name": "x"})
    assert not allowed(POLICIES, impostor, target, RPC_PORT)


def test_qaas_itself_stays_reachable_in_the_namespace_it_shares() -> None:
    # The first tenant lives in QaaS's own namespace: the policy selects node pods only.
    assert allowed(POLICIES, Pod("default", {}, {}), QAAS_POD, 8000)


def test_the_evaluator_reads_policies_as_kubernetes_does() -> None:
    """The evaluator's own semantics, on policies written to tell them apart."""
    pod = Pod("ns", {"app": "x"}, {"team": "a"})
    assert allowed([], pod, pod, 1)  # no policy: open
    deny_all = {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert not allowed([deny_all], pod, pod, 1)
    egress_only = {"spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert allowed([egress_only], pod, pod, 1)
    # Rules add up across policies.
    open_1 = {"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 1}]}]}}
    assert allowed([deny_all, open_1], pod, pod, 1)
    assert not allowed([deny_all, open_1], pod, pod, 2)
    # namespaceSelector AND podSelector in one entry vs. two entries (OR).
    both = {"namespaceSelector": {"matchLabels": {"team": "b"}},
            "podSelector": {"matchLabels": {"app": "x"}}}  # fmt: skip
    either = [{"namespaceSelector": {"matchLabels": {"team": "b"}}},
              {"podSelector": {"matchLabels": {"app": "x"}}}]  # fmt: skip
    source = Pod("other", {"app": "x"}, {"team": "a"})
    and_policy = {"spec": {"podSelector": {}, "ingress": [{"from": [both]}]}}
    or_policy = {"spec": {"podSelector": {}, "ingress": [{"from": either}]}}
    assert not allowed([and_policy], source, pod, 1)
    assert not allowed([or_policy], source, pod, 1)  # a bare podSelector: own namespace only
    assert allowed([or_policy], Pod("ns", {"app": "x"}), pod, 1)
