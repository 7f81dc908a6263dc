"""Tables: networks and nodes (desired and observed state), operations, node status history.

The database is the source of truth for what SHOULD exist; the reconciler makes the cluster
match it, and the pod watch writes back what it observes. Nothing important lives only in
memory, so a restarted process picks up exactly where the last one stopped.
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.domain.enums import (
    Consensus,
    Desired,
    NodeRole,
    NodeStatus,
    OperationKind,
    OperationState,
    Role,
)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime.datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        assert value.tzinfo is not None, "naive datetimes are ambiguous: use utcnow()"
        return value.astimezone(datetime.UTC)

    def result_processor(
        self, dialect: Any, coltype: Any
    ) -> Callable[[Any], datetime.datetime | None] | None:
        """UTC for a naive value, in one function a value: through ``process_result_value``
        ``TypeDecorator`` made three calls for each of the four datetimes of every node a list
        reads (a sixth of its rows' cost, with cProfile). SQLite's text goes to ``_from_text``."""
        if self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype):
            return _from_text  # the dialect hands back text (SQLite)
        utc = datetime.UTC

        def process(value: Any) -> datetime.datetime | None:
            if value is None:
                return None
            return value if value.tzinfo else value.replace(tzinfo=utc)  # type: ignore[no-any-return]

        return process


@functools.lru_cache(maxsize=16_384)  # at most about 3 MiB
def _from_text(value: str | None) -> datetime.datetime | None:
    """A datetime SQLite stored as ISO 8601 text (as SQLAlchemy parses it), in UTC.

    Remembered: a list reads the same values again and again, as rows change rarely, and a list
    of 200 nodes then takes about 0.05 ms instead of 0.8 ms for its 800 datetimes. Datetimes are
    immutable, so rows share them safely."""
    if value is None:
        return None
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _enum(kind: type[Any], name: str) -> Enum:
    # Stored as plain strings (no native ENUM type): adding a value needs no DDL.
    return Enum(kind, name=name, native_enum=False, length=32, validate_strings=True)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Tenant(Base):
    """An organisation: its networks live in its own namespace, its tokens see only its data."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), unique=True)
    max_networks: Mapped[int] = mapped_column(Integer)
    max_nodes: Mapped[int] = mapped_column(Integer)
    # How many networks and nodes it has (those being deleted included), kept by every insert
    # and delete in app/store/desired.py: what the limits are checked against.
    network_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    node_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; the secret is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant] = relationship()


class Network(Base):
    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_networks_tenant_id_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Looked up through uq_networks_tenant_id_name, whose first column it is (no index of its own).
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(63))
    consensus: Mapped[Consensus] = mapped_column(_enum(Consensus, "consensus"))
    # Set for a network that runs elsewhere and that our nodes join (networkJoin).
    external_coordinator_ip: Mapped[str | None] = mapped_column(String(45))
    # Each node's data claim: a quantity and a StorageClass ("" = the cluster's default); NULL
    # (networks made before claims existed) means the installation's settings.
    storage_size: Mapped[str | None] = mapped_column(String(32))
    storage_class: Mapped[str | None] = mapped_column(String(253))
    desired: Mapped[Desired] = mapped_column(_enum(Desired, "desired"), default=Desired.PRESENT)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )

    nodes: Mapped[list[Node]] = relationship(
        back_populates="network", cascade="all, delete-orphan", passive_deletes=True
    )
    tenant: Mapped[Tenant] = relationship()


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("network_id", "name", name="uq_nodes_network_id_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Looked up through uq_nodes_network_id_name, whose first column it is (no index of its own).
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    role: Mapped[NodeRole] = mapped_column(_enum(NodeRole, "node_role"))
    desired: Mapped[Desired] = mapped_column(_enum(Desired, "desired"), default=Desired.PRESENT)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    start_deadline: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    # What the reconciler found or made in the cluster.
    service_ip: Mapped[str | None] = mapped_column(String(45))
    has_service: Mapped[bool] = mapped_column(Boolean, default=False)
    has_deployment: Mapped[bool] = mapped_column(Boolean, default=False)
    reconcile_error: Mapped[str | None] = mapped_column(Text)
    # The last refused or failed API call for this node while the reconciler keeps trying.
    retry_reason: Mapped[str | None] = mapped_column(Text)

    # What the pod watch observed.
    pod_name: Mapped[str | None] = mapped_column(String(253))
    pod_phase: Mapped[str | None] = mapped_column(String(32))
    pod_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    pod_reason: Mapped[str | None] = mapped_column(String(128))
    pod_message: Mapped[str | None] = mapped_column(Text)
    pod_ip: Mapped[str | None] = mapped_column(String(45))
    pod_started_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    # What the chain probe last saw (app/control/chain.py); chain_run names the container run
    # ("<pod>#<restartCount>") the facts belong to: facts of an earlier run do not count.
    chain_probed_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    chain_run: Mapped[str | None] = mapped_column(String(300))
    chain_answering: Mapped[bool | None] = mapped_column(Boolean)
    chain_error: Mapped[str | None] = mapped_column(Text)
    chain_block_number: Mapped[int | None] = mapped_column(BigInteger)
    chain_peer_count: Mapped[int | None] = mapped_column(Integer)
    chain_syncing: Mapped[bool | None] = mapped_column(Boolean)
    chain_enode: Mapped[str | None] = mapped_column(Text)
    chain_client_version: Mapped[str | None] = mapped_column(Text)
    chain_raft_role: Mapped[str | None] = mapped_column(String(32))
    chain_raft_id: Mapped[int | None] = mapped_column(Integer)
    chain_raft_member: Mapped[bool | None] = mapped_column(Boolean)
    chain_validators: Mapped[str | None] = mapped_column(Text)  # a JSON array of addresses
    chain_stalled: Mapped[bool] = mapped_column(Boolean, default=False)

    # nodeDelete of a raft member (app/control/raft.py): the raft step is skipped (force), or
    # done (the leader removed its raft ID), or retried until delete_deadline (set on the
    # first pass of the deletion).
    delete_force: Mapped[bool] = mapped_column(Boolean, default=False)
    raft_removed: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_deadline: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    # Bumped on every change of the row's state, so consumers can order snapshots.
    revision: Mapped[int] = mapped_column(Integer, default=0)

    # Derived from all of the above by app.domain.status, kept for queries and history.
    status: Mapped[NodeStatus] = mapped_column(
        _enum(NodeStatus, "node_status"), default=NodeStatus.PENDING
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    network: Mapped[Network] = relationship(back_populates="nodes")


class NodeStatusChange(Base):
    """One transition of a node's status (recorded once, not once per duplicate event)."""

    __tablename__ = "node_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    status: Mapped[NodeStatus] = mapped_column(_enum(NodeStatus, "node_status"))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Operation(Base):
    """What a mutation started; it outlives its target (no foreign keys on purpose)."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[OperationKind] = mapped_column(_enum(OperationKind, "operation_kind"))
    state: Mapped[OperationState] = mapped_column(
        _enum(OperationState, "operation_state"), default=OperationState.PENDING
    )
    network_id: Mapped[str | None] = mapped_column(String(36), index=True)
    node_id: Mapped[str | None] = mapped_column(String(36), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    finished_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
