"""``qaas render``: the Kubernetes objects QaaS would create for a network, as YAML.

The objects come from ``NodeObjects.for_node`` (app/cluster/objects.py), the factory the
reconciler uses, with the same settings (node image, Service type, installation label, pod
annotations), so what a reviewer reads is what QaaS runs. Names and addresses are checked by the
rules the API uses (app/domain), so both accept and refuse the same input.

Two things are only known once QaaS runs, and are stood in for:

- ids: ``qaas.dev/network-id`` and ``qaas.dev/node-id`` are UUIDv5 of the names, stable from one
  render to the next (a running QaaS uses random ids of its own);
- addresses: a node advertises its own Service's ClusterIP (``IP``) and a peer dials the
  coordinator's (``COORDINATING_IP``), which exist only after the Services are created. Unless
  ``service_ips`` gives them, the StatefulSets carry a marked placeholder.

Each StatefulSet carries its node's data claim template (``data``; the controller names the claim
``data-<statefulset>-0``), sized and classed by ``QAAS_NODE_STORAGE_SIZE`` /
``QAAS_NODE_STORAGE_CLASS``, the defaults a new network gets.

Example::

    text = render(RenderRequest(network="acme", peers=("peer-1",)), load_settings())
    ips = parse_service_ips(["coordinator=10.96.0.20", "peer-1=10.96.0.21"])
    text = render(RenderRequest(network="acme", peers=("peer-1",), service_ips=ips), settings)
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from app.cluster.objects import NodeObjects
from app.config import Settings
from app.domain.addresses import dialable_ip_problem
from app.domain.enums import Consensus, NodeRole
from app.domain.names import (
    COORDINATOR_NAME,
    DEFAULT_JOIN_NODE_NAME,
    namespace_problem,
    network_name_problem,
    node_name_problem,
    object_name,
    tidy,
)

# Fixed, so that the stand-in ids are the same in every render of the same names.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "render.qaas.dev")
MAX_PEERS = 100

CLI_HELP = """\
Prints, as multi-document YAML, the Services and StatefulSets QaaS would create for a network
(from the same builders and settings as its reconciler), for review before anything is applied.

A node advertises its own Service's ClusterIP and peers dial the coordinator's, and a ClusterIP
exists only once its Service does. Without --service-ip the StatefulSets carry a placeholder
"<ClusterIP of NAME>" for IP and COORDINATING_IP. To apply the output faithfully:

  qaas render --network acme --peers 1 --only services | kubectl apply -f -
  kubectl get svc acme-coordinator acme-peer-1 -o jsonpath='{..spec.clusterIP}'
  qaas render --network acme --peers 1 --only statefulsets \\
      --service-ip coordinator=IP1 --service-ip peer-1=IP2 | kubectl apply -f -

The network-id and node-id labels are stable stand-ins (UUIDv5 of the names). Do not apply the
output where a QaaS with the same QAAS_INSTANCE works: it deletes objects that carry its labels
but that it has no record of.
"""


class RenderError(ValueError):
    """Input that cannot be rendered; the message is one sentence for the operator."""


@dataclass(frozen=True)
class RenderRequest:
    network: str
    consensus: Consensus = Consensus.RAFT
    peers: tuple[str, ...] = ()
    namespace: str | None = None
    # A coordinator running elsewhere (as with networkJoin): only the peers are rendered.
    coordinator_ip: str | None = None
    service_ips: Mapping[str, str] = field(default_factory=dict)  # node name -> its ClusterIP
    only: Literal["all", "services", "statefulsets"] = "all"

    def __post_init__(self) -> None:
        # Typed input is tidied as the API tidies it (app.domain.names.tidy).
        object.__setattr__(self, "network", tidy(self.network))
        object.__setattr__(self, "peers", tuple(tidy(peer) for peer in self.peers))
        if self.coordinator_ip is not None:
            object.__setattr__(self, "coordinator_ip", tidy(self.coordinator_ip))

    def nodes(self) -> list[tuple[str, NodeRole]]:
        """The nodes to render, coordinator first (peers need its address)."""
        joined = self.coordinator_ip is not None
        peers = self.peers or ((DEFAULT_JOIN_NODE_NAME,) if joined else ())
        coordinator = [] if joined else [(COORDINATOR_NAME, NodeRole.COORDINATOR)]
        return coordinator + [(name, NodeRole.PEER) for name in peers]


def peer_names(count: int) -> tuple[str, ...]:
    """``peer-1`` .. ``peer-N``, the names ``--peers N`` stands for."""
    if not 0 <= count <= MAX_PEERS:
        raise RenderError(f"--peers must be between 0 and {MAX_PEERS} (got {count})")
    return tuple(f"peer-{i}" for i in range(1, count + 1))


def parse_service_ips(values: Iterable[str]) -> dict[str, str]:
    """``["coordinator=10.96.0.20"]`` -> ``{"coordinator": "10.96.0.20"}``."""
    ips: dict[str, str] = {}
    for value in values:
        node, sep, ip = value.partition("=")
        if not sep or not node or not ip:
            raise RenderError(
                f'--service-ip wants NODE=IP, e.g. coordinator=10.96.0.20 (got "{value}")'
            )
        ips[tidy(node)] = tidy(ip)
    return ips


def unknown_ips(request: RenderRequest) -> list[str]:
    """The nodes whose ClusterIP the output stands in for with a placeholder."""
    if request.only == "services":
        return []
    return [name for name, _ in request.nodes() if name not in request.service_ips]


def validate(request: RenderRequest) -> None:
    """Raise ``RenderError`` with one sentence about the first thing wrong with ``request``."""
    # As networkCreate and networkJoin do (a joined network has no coordinator object).
    joined = request.coordinator_ip is not None
    if problem := network_name_problem(request.network, joined=joined):
        raise RenderError(f'the network name "{request.network}" {problem}')
    if request.namespace is not None and (problem := namespace_problem(request.namespace)):
        raise RenderError(f'the namespace "{request.namespace}" {problem}')
    if request.coordinator_ip is not None and (
        problem := dialable_ip_problem(request.coordinator_ip)
    ):
        raise RenderError(f"--coordinator-ip: {problem}")
    names = [name for name, _ in request.nodes()]
    for name in names:
        if problem := node_name_problem(request.network, name):
            raise RenderError(f'the node name "{name}" {problem}')
        if names.count(name) > 1:
            raise RenderError(
                f'the node name "{name}" is used twice in network "{request.network}"'
            )
    for node, ip in request.service_ips.items():
        if node not in names:
            raise RenderError(f'--service-ip names "{node}", which is not a node of this render '
                              f"({', '.join(names)})")  # fmt: skip
        if problem := dialable_ip_problem(ip):
            raise RenderError(f"--service-ip {node}: {problem}")


def _stand_in_id(*names: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(names)))


def _placeholder(network: str, node: str) -> str:
    return f"<ClusterIP of {object_name(network, node)}>"


def _document(obj: dict[str, Any], namespace: str | None, comment: str) -> str:
    if namespace:
        obj["metadata"] = {"name": obj["metadata"]["name"], "namespace": namespace,
                           **obj["metadata"]}  # fmt: skip
    return f"# {comment}\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def render(request: RenderRequest, settings: Settings) -> str:
    """The YAML documents for ``request``: every Service, then every StatefulSet."""
    validate(request)
    network_id = _stand_in_id(request.network)
    specs = [
        NodeObjects.for_node(
            settings,
            network_id=network_id,
            node_id=_stand_in_id(request.network, name),
            network=request.network,
            node=name,
            role=role,
            consensus=request.consensus,
        )
        for name, role in request.nodes()
    ]

    def ip_of(node: str) -> str:
        return request.service_ips.get(node) or _placeholder(request.network, node)

    coordinator_ip = request.coordinator_ip or ip_of(COORDINATOR_NAME)
    documents = []
    if request.only in ("all", "services"):
        for spec in specs:
            title = f"Service {spec.name} ({spec.role.value.lower()})"
            documents.append(_document(spec.service(), request.namespace, title))
    if request.only in ("all", "statefulsets"):
        for spec in specs:
            peer = spec.role is NodeRole.PEER
            workload = spec.statefulset(ip_of(spec.node), coordinator_ip if peer else None)
            title = f"StatefulSet {spec.name} ({spec.role.value.lower()}; claim {spec.claim_name})"
            documents.append(_document(workload, request.namespace, title))
    return _header(request, settings) + "---\n".join(documents)


def _header(request: RenderRequest, settings: Settings) -> str:
    nodes = ", ".join(name for name, _ in request.nodes())
    lines = [
        "Rendered by `qaas render` from the builders QaaS's reconciler uses "
        "(app/cluster/objects.py).",
        f"Network {request.network} ({request.consensus.value}), nodes: {nodes}; "
        f"image {settings.node_image}, Service type {settings.node_service_type}, "
        f"installation {settings.instance}; each node's data claim: "
        f"{settings.node_storage_size} of StorageClass "
        f"{settings.node_storage_class or '(the cluster default)'}.",
        "qaas.dev/network-id and qaas.dev/node-id are stable stand-ins (UUIDv5 of the names), "
        "not ids of a running QaaS.",
        "Do not apply where a QaaS with the same installation works: it deletes objects with "
        "its labels that it has no record of.",
    ]
    if request.coordinator_ip:
        lines.append(f"Joining a network whose coordinator is at {request.coordinator_ip}.")
    missing = unknown_ips(request)
    if missing:
        lines.append(
            "PLACEHOLDERS: IP/COORDINATING_IP values '<ClusterIP of ...>' are not addresses. "
            "Apply the Services first, read their ClusterIPs, then render again with "
            + " ".join(f"--service-ip {name}=IP" for name in missing)
            + "."
        )
    return "".join(f"# {part}\n" for line in lines for part in textwrap.wrap(line, 96))
