"""Names of networks, nodes, tenants and namespaces: the one home of every naming rule.

A node's Service and Deployment are named ``<network>-<node>``; that combined name is an
RFC 1035 label, so it must fit in 63 characters. A network QaaS creates leaves room for its
``-coordinator``; a joined network (whose coordinator runs elsewhere) only for a short node name.
The API, ``qaas render`` and ``qaas token create`` all ask these functions, so they accept and
refuse the same names. Input is tidied (surrounding white space dropped) by ``tidy`` alone.

Example::

    >>> name_problem("x" * 70)
    'must be at most 63 characters (got 70)'
    >>> object_name("acme", "peer-1")
    'acme-peer-1'
    >>> network_name_problem("a" * 51, joined=False) is None
    True
    >>> network_name_problem("a" * 52, joined=False)
    'must be at most 51 characters (got 52)'
    >>> node_name_problem("acme", "Peer")[:34]
    'must be a lowercase RFC 1035 label'
    >>> tenant_namespace("acme", "qaas-")
    'qaas-acme'
"""

from __future__ import annotations

import re

# A network's first node, and the default name of the node networkJoin runs.
COORDINATOR_NAME = "coordinator"
DEFAULT_JOIN_NODE_NAME = "peer"

LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Namespaces are RFC 1123 labels: they may start with a digit.
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_OBJECT_NAME = 63
# Leaves room for the shortest node name ("a") and the dash between the two.
MAX_NETWORK_NAME = MAX_OBJECT_NAME - 2
# A network QaaS creates names its coordinator "<network>-coordinator".
MAX_CREATED_NETWORK_NAME = MAX_OBJECT_NAME - len("-" + COORDINATOR_NAME)


def tidy(text: str) -> str:
    """What a caller typed, as QaaS stores it: without surrounding white space."""
    return text.strip()


def name_problem(name: str, limit: int = MAX_OBJECT_NAME) -> str | None:
    """Why ``name`` is not a usable name, or None if it is."""
    if not name:
        return "must not be empty"
    if len(name) > limit:
        return f"must be at most {limit} characters (got {len(name)})"
    if not LABEL.fullmatch(name):  # fullmatch: "$" would let a trailing newline through
        return (
            'must be a lowercase RFC 1035 label: a-z, 0-9 and "-", starting with a letter '
            'and not ending with "-"'
        )
    return None


def object_name(network: str, node: str) -> str:
    return f"{network}-{node}"


def combined_name_problem(network: str, node: str) -> str | None:
    """Why ``<network>-<node>`` cannot name a Kubernetes object, or None."""
    combined = object_name(network, node)
    if len(combined) > MAX_OBJECT_NAME:
        return (
            f'together with the network name the object name "{combined}" would be '
            f"{len(combined)} characters; the limit is {MAX_OBJECT_NAME}"
        )
    return None


def network_name_problem(name: str, *, joined: bool) -> str | None:
    """Why ``name`` cannot name a network, or None. ``joined``: its coordinator runs elsewhere
    (networkJoin), so no ``<name>-coordinator`` object will exist."""
    return name_problem(name, MAX_NETWORK_NAME if joined else MAX_CREATED_NETWORK_NAME)


def node_name_problem(network: str, node: str) -> str | None:
    """Why ``node`` cannot name a node of ``network``, or None."""
    return name_problem(node, MAX_NETWORK_NAME) or combined_name_problem(network, node)


def tenant_name_problem(name: str, namespace_prefix: str) -> str | None:
    """Why ``name`` cannot name a tenant whose namespace is ``<prefix><name>``, or None."""
    return name_problem(name, MAX_OBJECT_NAME - len(namespace_prefix))


def tenant_namespace(tenant: str, prefix: str) -> str:
    """The namespace of a tenant that does not use the installation's own namespace."""
    return f"{prefix}{tenant}"[:MAX_OBJECT_NAME].rstrip("-")


def namespace_problem(namespace: str) -> str | None:
    """Why ``namespace`` is not a valid namespace name (an RFC 1123 label), or None."""
    return None if NAMESPACE.fullmatch(namespace) else "is not a valid namespace name"
