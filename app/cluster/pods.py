"""What QaaS reads from a pod: phase, readiness, restarts, why it waits or ended, its IP.

Example::

    observation = observe(pod)        # pod: the API's JSON
    observation.reason                # e.g. "CrashLoopBackOff"
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.cluster.objects import CONTAINER
from app.domain.status import UNSCHEDULABLE

Obj = dict[str, Any]
# What QaaS calls a pod's wait for its claim, which the scheduler words as "pod has unbound
# immediate PersistentVolumeClaims", or 'persistentvolumeclaim "x" not found' while the claim is
# not in its cache yet.
WAITING_FOR_STORAGE = "WaitingForStorage"


@dataclass(frozen=True)
class PodObservation:
    pod_name: str | None
    phase: str | None
    ready: bool
    restart_count: int
    reason: str | None
    message: str | None
    pod_ip: str | None
    started_at: datetime.datetime | None


NO_POD = PodObservation(None, None, False, 0, None, None, None, None)


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def observe(pod: Obj) -> PodObservation:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ours = next((c for c in containers if c.get("name") == CONTAINER), None)
    container = ours or (containers[0] if containers else {})
    state = container.get("state") or {}
    detail = state.get("waiting") or state.get("terminated") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    reason = detail.get("reason") or (
        status.get("reason") if status.get("phase") == "Failed" else None
    )
    message = detail.get("message") or (
        status.get("message") if status.get("phase") == "Failed" else None
    )
    scheduled = conditions.get("PodScheduled") or {}
    if not reason and scheduled.get("status") == "False":
        # The scheduler found no node: "0/1 nodes are available: 1 Insufficient cpu."
        reason = scheduled.get("reason") or UNSCHEDULABLE
        message = scheduled.get("message")
        if "persistentvolumeclaim" in (message or "").lower():
            # Not "no node can take it": its new data claim is not bound yet (the provisioner
            # is at work; a claim that never binds, e.g. of an unknown StorageClass, leaves
            # this as the last thing seen when the start deadline fails the node).
            reason = WAITING_FOR_STORAGE
    return PodObservation(
        pod_name=pod["metadata"]["name"],
        phase=status.get("phase"),
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        restart_count=int(container.get("restartCount") or 0),
        reason=reason,
        message=message,
        pod_ip=status.get("podIP"),
        started_at=_parse_time(status.get("startTime")),
    )


def current_pod(pods: Iterable[Obj]) -> Obj | None:
    """The pod that speaks for a node: the newest one not being deleted (else the newest).

    ``creationTimestamp`` has whole seconds, so two pods made in the same second tie; the tie
    goes to the greater name, then the greater uid, so that every replica picks the same pod
    whatever order its cache lists them in."""
    candidates = sorted(pods, key=_age_order)
    live = [p for p in candidates if not p["metadata"].get("deletionTimestamp")]
    chosen = live or candidates
    return chosen[-1] if chosen else None


def _age_order(pod: Obj) -> tuple[str, str, str]:
    meta = pod["metadata"]
    return meta.get("creationTimestamp") or "", meta.get("name") or "", meta.get("uid") or ""
