"""Configuration, from environment variables prefixed ``QAAS_`` (or a ``.env`` file).

=================================  =========================================================
``QAAS_DATABASE_URL``              SQLAlchemy URL (default ``sqlite+aiosqlite:///./qaas.db``;
                                   PostgreSQL: ``postgresql+asyncpg://user@host/db``)
``QAAS_SQLITE_BUSY_TIMEOUT``       seconds a SQLite write waits for the write lock (5); then
                                   the API answers UNAVAILABLE with ``retryAfterSeconds``
``QAAS_CLUSTER``                   ``auto`` (default): in-cluster config, else ``KUBECONFIG`` or
                                   ``~/.kube/config``, else the local sandbox; or force one of
                                   ``in-cluster``, ``kubeconfig``, ``sandbox``
``QAAS_KUBECONFIG``                a kubeconfig to use (beats ``KUBECONFIG``; implies
                                   ``QAAS_CLUSTER=kubeconfig`` under ``auto``)
``QAAS_NAMESPACE``                 QaaS's own namespace: the first tenant's (its node objects)
                                   and the control loop's Lease; unset, the first tenant's is
                                   ``default`` while in a cluster the Lease and the start-up
                                   check use the pod's own: set it there (the manifests do)
``QAAS_NODE_IMAGE``                QNM image (default ``narayanprusty/qnm``)
``QAAS_NODE_SERVICE_TYPE``         ``ClusterIP`` (default) or ``NodePort`` (publishes geth RPC!)
``QAAS_NODE_POD_ANNOTATIONS``     JSON object of annotations for node pods (e.g. for a mesh,
                                   or the sandbox's ``sandbox.qaas.dev/behavior``)
``QAAS_NODE_STORAGE_SIZE``         default claim size of a node's data (``1Gi``); a network's
                                   ``storage`` input may ask for up to
                                   ``QAAS_NODE_STORAGE_MAX_SIZE`` (``100Gi``, also the tenant
                                   quota's ``requests.storage`` per node)
``QAAS_NODE_STORAGE_CLASS``        default StorageClass of those claims (empty: the cluster's
                                   default class)
``QAAS_INSTANCE``                  label value that tells this QaaS's objects from another's
``QAAS_RESYNC_SECONDS``            full reconcile period (default 10)
``QAAS_NODE_START_DEADLINE``       seconds a node may take to run before it is FAILED (300)
``QAAS_PRODUCTION``                no GraphiQL, no introspection, no bootstrap token (false)
``QAAS_GRAPHIQL``, ``QAAS_INTROSPECTION``  override what QAAS_PRODUCTION implies for each
``QAAS_MAX_SUBSCRIPTIONS``         per WebSocket connection (default 20)
``QAAS_MAX_BODY_BYTES``            largest GraphQL request body over HTTP (1048576, 1 MiB):
                                   a larger one is answered 413 (unread when its
                                   Content-Length says so)
``QAAS_BODY_TIMEOUT_SECONDS``      how long a GraphQL request's body may take to arrive over
                                   HTTP, once its headers are in (30): later is 408 and the
                                   connection is closed
``QAAS_HEADER_TIMEOUT_SECONDS``    how long a request's line and headers may take to arrive, from
                                   the connection's opening or the request's first byte (10):
                                   later is 408 and the connection is closed (``qaas serve``)
``QAAS_RESPONSE_CACHE_ENTRIES``    query answers kept in memory (1000; 0: no cache), at most
                                   ``QAAS_RESPONSE_CACHE_BYTES`` (64 MiB) in all, each at most
                                   ``QAAS_RESPONSE_CACHE_TTL`` seconds (5): how late a change
                                   made by another process (``qaas`` CLI, replica) may show
``QAAS_MAX_WS_PER_TOKEN``          open WebSockets per token (20) and per client address
                                   (``QAAS_MAX_WS_PER_ADDRESS``, 50); over either: closed 4429
``QAAS_TOKEN_RECHECK_SECONDS``     how often open WebSockets' tokens are checked against the
                                   database (2); revoked or expired: closed 4403; also how long
                                   a token is remembered (a revocation NOTIFYed on PostgreSQL
                                   ends it at once)
``QAAS_TOKEN_TOUCH_SECONDS``       a token's ``last_used_at`` is written at most this often (60)
``QAAS_CLUSTER_CIDRS``             the cluster's Service and pod ranges (``10.96.0.0/12,
                                   10.244.0.0/16``): ``networkJoin`` refuses a coordinator there
                                   unless ``QAAS_JOIN_ALLOW_CLUSTER_ADDRESSES=true``
``QAAS_TENANT_NAMESPACE_PREFIX``   tenants' namespaces are ``<prefix><tenant>`` (``qaas-``);
                                   the first tenant uses ``QAAS_NAMESPACE``
``QAAS_SERVICE_ACCOUNT``          ``namespace:name`` of QaaS's ServiceAccount; when set, each
                                   provisioned tenant namespace gets a RoleBinding of
                                   ``QAAS_TENANT_CLUSTER_ROLE`` (``qaas-tenant``) to it
``QAAS_TENANT_PROVISIONING``       ``auto``: QaaS makes a tenant's namespace, RoleBinding,
                                   ResourceQuota and NetworkPolicy itself (needs admin rights:
                                   the default outside a cluster, e.g. the sandbox); ``admin``:
                                   an administrator runs ``qaas tenant create`` and QaaS only
                                   checks (the default in a cluster)
``QAAS_TENANT_MAX_NETWORKS``       per tenant (default 10); ``QAAS_TENANT_MAX_NODES`` (50)
``QAAS_MUTATIONS_PER_MINUTE``      per token, sustained (60), with bursts of
                                   ``QAAS_MUTATION_BURST`` (20)
``QAAS_STARTUP_RETRY``             when the database or the cluster cannot be used at start-up:
                                   ``true``: serve /healthz, answer /readyz 503 with the reason
                                   and retry with backoff (capped at 30 s); ``false``: print one
                                   sentence and exit 69 (default: true in a cluster, else false)
``QAAS_UNREADY_AFTER_SECONDS``     /readyz turns 503 when the reconciler, a pod informer or the
                                   chain probe has been failing, or the PostgreSQL event bus
                                   not listening, for longer than this (60)
``QAAS_KUBE_QPS``                  requests per second to the Kubernetes API, all callers
                                   together (20), with bursts of ``QAAS_KUBE_BURST`` (40)
``QAAS_KUBE_TIMEOUT_SECONDS``      per request to the Kubernetes API (30); a watch may stay
                                   silent for its server-side timeout plus this
``QAAS_KUBE_RETRIES``              retries of a failed Kubernetes API call (4; which failures
                                   are retried: ``app/cluster/retry.py``)
``QAAS_KUBE_BACKOFF_SECONDS``      first wait before a retry (0.25), doubling, with jitter
``QAAS_KUBE_RETRY_AFTER_MAX``      cap on the server's ``Retry-After`` (10 seconds)
``QAAS_CHAIN_PROBE``               ``on`` (default): JSON-RPC to each ready node's pod, and
                                   RUNNING needs the chain to answer (app/chain); ``off``
``QAAS_CHAIN_PROBE_INTERVAL``      seconds between rounds (5); ``_TIMEOUT`` per request (3);
                                   ``_CONCURRENCY`` nodes at once (20); ``_BACKOFF_MAX`` (60);
                                   ``_BLOCK_EVERY`` block-number-only writes (15);
                                   ``_STALL_SECONDS`` IBFT: no block this long (60);
                                   ``_NETWORKS`` the ranges it may dial (the private ones)
``QAAS_LEADER_ELECTION``           ``auto`` (default: ``on`` with PostgreSQL, ``off`` with
                                   SQLite, which is one replica), ``on`` or ``off``: the control
                                   loop runs only on the replica holding the Lease
                                   ``<QAAS_INSTANCE>-control`` in ``QAAS_NAMESPACE``
``QAAS_LEASE_SECONDS``             the lease's duration (15); the leader stops writing when no
                                   renewal succeeded for ``QAAS_LEASE_RENEW_DEADLINE`` (10) and
                                   tries every ``QAAS_LEASE_RETRY_PERIOD`` (2)
``QAAS_LEADER_IDENTITY``           this replica's name in the lease (default: hostname-pid; the
                                   manifests set the pod's name)
``QAAS_RAFT_REMOVE_DEADLINE``      seconds ``nodeDelete`` of a raft member keeps asking the raft
                                   leader to remove it before its operation FAILS (120)
``QAAS_EVENT_BUS``                 ``auto`` (default: ``postgres`` on PostgreSQL, ``memory`` on
                                   SQLite): how node changes and wake-up calls reach the replicas
``QAAS_LOG_LEVEL``                 ``DEBUG``, ``INFO`` (default), ``WARNING`` or ``ERROR``;
                                   ``QAAS_LOG_FORMAT`` ``text`` (default) or ``json``
=================================  =========================================================
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.addresses import address_ranges
from app.domain.probe_scope import probe_networks
from app.domain.qnm import DEFAULT_IMAGE
from app.domain.storage import quantity_bytes, size_problem, storage_class_problem

ClusterMode = Literal["auto", "in-cluster", "kubeconfig", "sandbox"]


class ConfigError(ValueError):
    """Configuration that cannot work; the message is one sentence for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QAAS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./qaas.db"
    # How long a SQLite writer waits for the write lock (app/store/engine.py), in seconds.
    sqlite_busy_timeout: float = Field(default=5.0, gt=0, le=600)
    cluster: ClusterMode = "auto"
    kubeconfig: str | None = None
    namespace: str | None = None
    node_image: str = DEFAULT_IMAGE
    node_service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    node_pod_annotations: dict[str, str] = Field(default_factory=dict)
    # A node's data claim (app/domain/storage.py checks the values).
    node_storage_size: str = "1Gi"
    node_storage_class: str = ""
    node_storage_max_size: str = "100Gi"
    instance: str = Field(default="qaas", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    resync_seconds: float = Field(default=10.0, gt=0)
    node_start_deadline: float = Field(default=300.0, gt=0)
    production: bool = False
    graphiql: bool | None = None  # default: on, except in production
    introspection: bool | None = None  # default: on, except in production
    max_subscriptions: int = Field(default=20, ge=1, le=1000)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Answers to queries kept in memory (schema/response_cache.py): how many (0 = off), how
    # many bytes in all, and how long at most (changes by other processes are seen after that).
    response_cache_entries: int = Field(default=1000, ge=0)
    response_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    response_cache_ttl: float = Field(default=5.0, gt=0)
    # Open WebSockets (app/services/connections.py) and token use (app/services/token_use.py).
    max_ws_per_token: int = Field(default=20, ge=1)
    max_ws_per_address: int = Field(default=50, ge=1)
    token_recheck_seconds: float = Field(default=2.0, gt=0, le=60)
    token_touch_seconds: float = Field(default=60.0, ge=0)
    # networkJoin's coordinator may not be inside these unless allowed (app/domain/addresses.py).
    cluster_cidrs: str = "10.96.0.0/12,10.244.0.0/16"
    join_allow_cluster_addresses: bool = False
    tenant_namespace_prefix: str = Field(default="qaas-", pattern=r"^[a-z][-a-z0-9]{0,20}$")
    # In a cluster: QaaS's own ServiceAccount ("namespace:name") and the ClusterRole that
    # provisioning binds to it in each tenant namespace (see manifests/qaas).
    service_account: str | None = Field(default=None, pattern=r"^[a-z0-9-]+:[a-z0-9-]+$")
    tenant_cluster_role: str = "qaas-tenant"
    # Who provisions tenant namespaces (app/control/namespaces.py); None: "admin" in a
    # cluster (in-cluster config), else "auto".
    tenant_provisioning: Literal["auto", "admin"] | None = None
    tenant_max_networks: int = Field(default=10, ge=1)
    tenant_max_nodes: int = Field(default=50, ge=1)
    mutations_per_minute: float = Field(default=60.0, gt=0)
    mutation_burst: int = Field(default=20, ge=1)
    startup_retry: bool | None = None  # default: on in a cluster (in-cluster config), else off
    unready_after_seconds: float = Field(default=60.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object a line (app/cli/logformat.py)
    # The client's manners toward the Kubernetes API (app/cluster/retry.py).
    kube_qps: float = Field(default=20.0, gt=0)
    kube_burst: int = Field(default=40, ge=1)
    kube_timeout_seconds: float = Field(default=30.0, gt=0)
    kube_retries: int = Field(default=4, ge=0, le=20)
    kube_backoff_seconds: float = Field(default=0.25, gt=0)
    kube_retry_after_max: float = Field(default=10.0, ge=0)
    # Node changes across replicas: "postgres" (LISTEN/NOTIFY, app/events/pg_bus.py), "memory"
    # (this process only), "auto": postgres on a PostgreSQL database, else memory.
    event_bus: Literal["auto", "memory", "postgres"] = "auto"
    # The chain probe (app/chain, app/control/chain.py).
    chain_probe: Literal["on", "off"] = "on"
    chain_probe_interval: float = Field(default=5.0, gt=0)
    chain_probe_timeout: float = Field(default=3.0, gt=0)
    chain_probe_concurrency: int = Field(default=20, ge=1, le=1000)
    chain_probe_backoff_max: float = Field(default=60.0, gt=0)
    chain_probe_block_every: float = Field(default=15.0, ge=0)  # block-number-only writes
    chain_probe_stall_seconds: float = Field(default=60.0, gt=0)  # IBFT: no block this long
    # Comma-separated CIDRs the probe may dial; each must be private (RFC 1918, RFC 6598,
    # fc00::/7) or loopback: app/chain/addresses.py. Default: all of those except loopback.
    chain_probe_networks: str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"
    # nodeDelete of a raft member: how long raft_removePeer is retried (app/control/raft.py).
    raft_remove_deadline: float = Field(default=120.0, gt=0)
    # Leader election for the control loop (app/cluster/lease.py, app/control/leadership.py).
    leader_election: Literal["auto", "on", "off"] = "auto"
    lease_seconds: float = Field(default=15.0, ge=1)
    lease_renew_deadline: float = Field(default=10.0, gt=0)
    lease_retry_period: float = Field(default=2.0, gt=0)
    leader_identity: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("node_storage_max_size")
    @classmethod
    def _max_size(cls, value: str) -> str:
        if quantity_bytes(value) is None:
            raise ValueError("must be a Kubernetes quantity such as 100Gi")
        return value

    @field_validator("node_storage_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if problem := size_problem(value, max_size=value):  # the maximum is checked at use
            raise ValueError(problem)
        return value

    @field_validator("node_storage_class")
    @classmethod
    def _class(cls, value: str) -> str:
        if value and (problem := storage_class_problem(value)):
            raise ValueError(problem)
        return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one sentence per bad variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            variable = "QAAS_" + "_".join(str(part) for part in item["loc"]).upper()
            value = item.get("input")
            problems.append(f"{variable}={value!r} is not valid: {item['msg']}")
        raise ConfigError("; ".join(problems)) from None
    if not settings.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            f"QAAS_DATABASE_URL={settings.database_url!r} is not supported: use "
            "sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
        )
    if settings.event_bus == "postgres" and not shared_bus(settings):
        raise ConfigError(
            "QAAS_EVENT_BUS=postgres needs a PostgreSQL QAAS_DATABASE_URL (postgresql+asyncpg://)"
        )
    try:
        probe_networks(settings.chain_probe_networks)
    except ValueError as error:
        raise ConfigError(
            f"QAAS_CHAIN_PROBE_NETWORKS={settings.chain_probe_networks!r} is not valid: {error}"
        ) from None
    try:
        address_ranges(settings.cluster_cidrs)
    except ValueError as error:
        raise ConfigError(
            f"QAAS_CLUSTER_CIDRS={settings.cluster_cidrs!r} is not valid: {error}"
        ) from None
    if problem := size_problem(settings.node_storage_size, max_size=settings.node_storage_max_size):
        raise ConfigError(
            f"QAAS_NODE_STORAGE_SIZE={settings.node_storage_size!r} is not valid: {problem} "
            "(QAAS_NODE_STORAGE_MAX_SIZE)"
        )
    if not (settings.lease_retry_period < settings.lease_renew_deadline < settings.lease_seconds):
        raise ConfigError(
            f"QAAS_LEASE_RETRY_PERIOD={settings.lease_retry_period:g}, QAAS_LEASE_RENEW_DEADLINE="
            f"{settings.lease_renew_deadline:g} and QAAS_LEASE_SECONDS={settings.lease_seconds:g}"
            " are not valid: each must be shorter than the next"
        )
    return settings


def shared_bus(settings: Settings) -> bool:
    """Whether node changes and wake-up calls go through PostgreSQL (several replicas)."""
    postgres = settings.database_url.startswith("postgresql")
    return postgres and settings.event_bus != "memory"


def leader_election_on(settings: Settings) -> bool:
    """``auto``: on with PostgreSQL (several replicas may share it), off with SQLite."""
    if settings.leader_election == "auto":
        return settings.database_url.startswith("postgresql")
    return settings.leader_election == "on"


def leader_identity(settings: Settings) -> str:
    """This replica's name in the lease: unique per process (a pod's hostname is its name)."""
    return settings.leader_identity or f"{socket.gethostname()}-{os.getpid()}"


def graphiql_enabled(settings: Settings) -> bool:
    return settings.graphiql if settings.graphiql is not None else not settings.production


def introspection_enabled(settings: Settings) -> bool:
    return settings.introspection if settings.introspection is not None else not settings.production
