"""Names of networks and nodes: RFC 1035 labels that make valid Kubernetes object names.

Each node's Service and Deployment are named ``<network>-<node>``; that combined name is an
RFC 1035 label too, so it must fit in 63 characters.

Example::

    >>> name_problem("x" * 70)
    'must be at most 63 characters (got 70)'
    >>> object_name("acme", "peer-1")
    'acme-peer-1'
"""

from __future__ import annotations

import re

# A network's first node, and the default name of the node networkJoin runs.
COORDINATOR_NAME = "coordinator"
DEFAULT_JOIN_NODE_NAME = "peer"

LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_OBJECT_NAME = 63
# Leaves room for the shortest node name ("a") and the dash between the two.
MAX_NETWORK_NAME = MAX_OBJECT_NAME - 2


def name_problem(name: str, limit: int = MAX_OBJECT_NAME) -> str | None:
    """Why ``name`` is not a usable name, or None if it is."""
    if not name:
        return "must not be empty"
    if len(name) > limit:
        return f"must be at most {limit} characters (got {len(name)})"
    if not LABEL.match(name):
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
