"""Has a live object drifted from what QaaS wants? Only the fields QaaS decides are compared:
the live object also carries what the apiserver and controllers filled in.

Example::

    workload_drifted(live, node_objects.statefulset(own_ip, coordinator_ip))  # True/False
    statefulset_drifted(live, node_objects, own_ip, coordinator_ip)  # the same, memoised

A settled pass compares every node's StatefulSet; building each desired object (and its spec
hash) again on every pass was a fifth of a pass at 10,000 nodes, so ``statefulset_drifted``
remembers the desired fields per (node objects, own IP, coordinator IP): they depend on
nothing else.

A StatefulSet's ``serviceName``, ``selector`` and ``volumeClaimTemplates`` cannot change once it
exists; QaaS never asks them to (a network's storage is fixed when it is created), so they are
not compared: a replace could only be refused.
"""

from __future__ import annotations

import functools
from typing import Any

from app.cluster.objects import SPEC_HASH, NodeObjects

Obj = dict[str, Any]


def _owned_fields(workload: Obj) -> Obj:
    """The parts of a StatefulSet QaaS decides (and may change). Compared field by field,
    because the live object also carries what the apiserver defaulted (pull policy, ...)."""
    spec = workload.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    containers = pod.get("containers") or [{}]
    container = containers[0]
    return {
        "hash": (workload["metadata"].get("annotations") or {}).get(SPEC_HASH),
        "labels": workload["metadata"].get("labels"),
        "replicas": spec.get("replicas"),
        "template_labels": (template.get("metadata") or {}).get("labels"),
        "template_annotations": (template.get("metadata") or {}).get("annotations") or {},
        "token": pod.get("automountServiceAccountToken"),
        "containers": len(containers),
        "container": {
            key: container.get(key)
            for key in ("name", "image", "command", "args", "workingDir", "env")
        },
        "mounts": [
            (m.get("name"), m.get("mountPath"), m.get("subPath"))
            for m in container.get("volumeMounts") or []
        ],
        "probe": (container.get("readinessProbe") or {}).get("tcpSocket"),
        "ports": [(p.get("name"), p.get("containerPort")) for p in container.get("ports") or []],
    }


def workload_drifted(current: Obj, desired: Obj) -> bool:
    return _owned_fields(current) != _owned_fields(desired)


@functools.lru_cache(maxsize=16_384)
def _wanted(spec: NodeObjects, own_ip: str, coordinator_ip: str | None) -> Obj:
    """The owned fields of the desired StatefulSet (shared: never to be changed)."""
    return _owned_fields(spec.statefulset(own_ip=own_ip, coordinator_ip=coordinator_ip))


def statefulset_drifted(
    current: Obj, spec: NodeObjects, own_ip: str, coordinator_ip: str | None
) -> bool:
    """As ``workload_drifted(current, spec.statefulset(own_ip, coordinator_ip))``."""
    return _owned_fields(current) != _wanted(spec, own_ip, coordinator_ip)


def service_drifted(current: Obj, desired: Obj) -> bool:
    have, wanted = current.get("spec") or {}, desired["spec"]
    return (
        have.get("type") != wanted["type"]
        or have.get("selector") != wanted["selector"]
        or [(p.get("name"), p.get("port")) for p in have.get("ports") or []]
        != [(p["name"], p["port"]) for p in wanted["ports"]]
        or current["metadata"].get("labels") != desired["metadata"]["labels"]
    )
