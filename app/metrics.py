"""Prometheus metrics: what an operator watches, served at GET /metrics (README "Metrics").

Every metric is a module-level object in this module's own registry (``REGISTRY``), registered
once per process: several apps in one process (the tests) share them, and nothing else in the
process (another library's default registry) is exposed. The layers that count call the small
functions and objects here; none of them knows about Prometheus.

Labels are bounded and never name a tenant, a network, a node or an id: ``kind`` of an error
is one of ``ERROR_KINDS``, ``kind`` of a cluster object is a Kubernetes kind QaaS manages, and
a GraphQL request's ``type`` and ``outcome`` come from fixed lists.

Example::

    with metrics.reconcile_pass():
        await reconciler.reconcile_once()
    metrics.cluster_object("Service", "created")
    body, content_type = metrics.exposition()
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

disable_created_metrics()  # type: ignore[no-untyped-call]  # no "_created" series
REGISTRY = CollectorRegistry()

RECONCILE_PASSES = Counter(
    "qaas_reconcile_passes",
    "Reconcile passes completed (failed ones included), by scope: all, or kicked networks.",
    ["scope"], registry=REGISTRY,
)  # fmt: skip
RECONCILE_SECONDS = Histogram(
    "qaas_reconcile_pass_seconds", "Duration of a reconcile pass, by scope.", ["scope"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
RECONCILE_ERRORS = Counter(
    "qaas_reconcile_errors", "Errors the reconciler met (a failed node, tenant or pass), by kind.",
    ["kind"], registry=REGISTRY,
)  # fmt: skip
CLUSTER_OBJECTS = Counter(
    "qaas_cluster_objects", "Kubernetes objects QaaS created, replaced or deleted.",
    ["kind", "action"], registry=REGISTRY,
)  # fmt: skip
INFORMER_RELISTS = Counter(
    "qaas_informer_relists", "Full lists by the pod informers (the first of each included).",
    registry=REGISTRY,
)  # fmt: skip
INFORMER_WATCH_RESTARTS = Counter(
    "qaas_informer_watch_restarts",
    "Broken watch streams of the pod informers, watched again from their last version.",
    registry=REGISTRY,
)
EVENT_BUS_RECONNECTS = Counter(
    "qaas_event_bus_reconnects",
    "Failed attempts and lost connections of the PostgreSQL event bus's LISTEN connection.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "qaas_leader", "1 while this replica runs the control loop (holds the lease), else 0.",
    registry=REGISTRY,
)  # fmt: skip
SUBSCRIBERS = Gauge(
    "qaas_subscribers", "Open subscriptions to node changes (event bus mailboxes).",
    registry=REGISTRY,
)  # fmt: skip
COALESCED = Counter(
    "qaas_subscription_updates_coalesced",
    "Node changes a slow subscriber never received: a newer state of the node replaced them.",
    registry=REGISTRY,
)
GRAPHQL_REQUESTS = Counter(
    "qaas_graphql_requests", "GraphQL requests by operation type and outcome.",
    ["type", "outcome"], registry=REGISTRY,
)  # fmt: skip
GRAPHQL_SECONDS = Histogram(
    "qaas_graphql_request_seconds",
    "Latency of GraphQL queries and mutations (subscriptions are not timed).",
    ["type"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
GRAPHQL_CACHED = Counter(
    "qaas_graphql_cached_answers",
    "GraphQL queries answered from the response cache (also counted in requests).",
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "qaas_mutations_rate_limited", "Mutations refused by the per-token rate limit.",
    registry=REGISTRY,
)  # fmt: skip

OPERATION_TYPES = ("query", "mutation", "subscription", "unknown")
OUTCOMES = (
    "ok", "client_error", "server_error", "unauthenticated", "forbidden", "rate_limited",
)  # fmt: skip
ACTIONS = ("created", "replaced", "deleted")
# An error's kind: the first of these class names in its class's MRO, else "other". The names
# are QaaS's own error types (app/cluster/errors.py, app/control) and SQLAlchemy's base class.
ERROR_KINDS = {
    "ClusterUnavailable": "cluster_unavailable",
    "Forbidden": "forbidden",
    "NotFound": "not_found",
    "Conflict": "conflict",
    "Gone": "gone",
    "Invalid": "invalid",
    "TooManyRequests": "too_many_requests",
    "ForeignObject": "foreign_object",
    "NotProvisioned": "not_provisioned",
    "WriteConflict": "write_conflict",
    "SQLAlchemyError": "database",
    "KubeError": "kubernetes",
}


def error_kind(error: BaseException) -> str:
    """A bounded label for ``error``: see ``ERROR_KINDS``."""
    for cls in type(error).__mro__:
        kind = ERROR_KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return "other"


def reconcile_error(error: BaseException) -> None:
    RECONCILE_ERRORS.labels(error_kind(error)).inc()


@contextmanager
def reconcile_pass(scope: str = "all") -> Iterator[None]:
    """Count and time one pass (``scope``: ``all`` or ``networks``, a pass over kicked networks
    only). A pass that raises counts as an error of its kind, unless it is the reconciler's
    summary of tenant failures (``PassFailed``), counted one by one."""
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        if type(error).__name__ != "PassFailed":
            reconcile_error(error)
        raise
    finally:
        RECONCILE_PASSES.labels(scope).inc()
        RECONCILE_SECONDS.labels(scope).observe(time.perf_counter() - started)


def cluster_object(kind: str, action: str) -> None:
    """``action``: one of ``ACTIONS``; ``kind``: the object's Kubernetes kind."""
    CLUSTER_OBJECTS.labels(kind, action).inc()


def set_leader(leading: bool) -> None:
    """Whether this replica holds the lease (runs the control loop)."""
    LEADER.set(1 if leading else 0)


def graphql_request(operation: str, outcome: str, seconds: float | None = None) -> None:
    """One GraphQL request; ``seconds`` is observed for queries and mutations only."""
    GRAPHQL_REQUESTS.labels(operation, outcome).inc()
    if seconds is not None and operation in ("query", "mutation"):
        GRAPHQL_SECONDS.labels(operation).observe(seconds)


def cached_answer(started: float) -> None:
    """A query answered from the response cache; ``started``: its ``time.perf_counter()``."""
    GRAPHQL_CACHED.inc()
    graphql_request("query", "ok", time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
