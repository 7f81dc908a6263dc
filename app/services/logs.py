"""A node's log: the last lines of its pod's QNM container, read through ``pods/log``.

With the QNM image's entrypoint (manifests/qnm/qnm-logs) that log holds QNM's own output and
its three log files, each line prefixed ``[geth] ``, ``[constellation] `` or ``[comm] ``.
Bounded twice: at most ``MAX_TAIL`` lines (a ``tail`` outside 1..``MAX_TAIL`` is the caller's
error, not clamped) and at most ``LIMIT_BYTES`` bytes (the kubelet stops there, so the last
line may be cut). The Kubernetes call is QaaS's (its ServiceAccount's ``get`` on ``pods/log``
in the tenant's namespace), never the caller's.

Example::

    lines = await node_logs(deps, principal.namespace, node_view, tail=100)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.services.api_deps import ApiDeps
from app.store.read_models import NodeView

MAX_TAIL = 1000
LIMIT_BYTES = 256 * 1024


class LogsUnavailable(Exception):
    """The log could not be read (the Kubernetes API refused or failed); the message says why."""


# What the composition root hands the API (``ApiDeps.pod_log``): (namespace, pod, tail lines,
# limit bytes) -> the QNM container's log, None if the pod is gone; raises LogsUnavailable.
PodLogReader = Callable[[str, str, int, int], Awaitable[str | None]]


class TailOutOfRange(ValueError):
    """A ``tail`` outside 1..MAX_TAIL: the caller's mistake, said as such."""


async def node_logs(deps: ApiDeps, namespace: str, node: NodeView, tail: int) -> list[str]:
    """The last ``tail`` lines of ``node``'s current pod (in ``namespace``, its tenant's), oldest
    first; [] when it has no pod, or the pod has just gone."""
    if not 1 <= tail <= MAX_TAIL:
        raise TailOutOfRange(f"`tail` must be between 1 and {MAX_TAIL} (got {tail})")
    if node.pod_name is None:
        return []
    if deps.pod_log is None:
        raise LogsUnavailable("QaaS is not connected to the cluster yet")
    try:
        text = await deps.pod_log(namespace, node.pod_name, tail, LIMIT_BYTES)
    except LogsUnavailable as error:
        raise LogsUnavailable(
            f"cannot read the log of pod {node.pod_name} of node {node.name}: {error}"
        ) from None
    return [] if text is None else text.splitlines()
