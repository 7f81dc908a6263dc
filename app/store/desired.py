"""Desired state: the network and node rows mutations write and the control loop reads.

Example::

    networks, nodes = await tenant_counts(session, tenant_id)
    room = await claim(session, tenant_id, networks=1, nodes=1, name="acme")  # then insert()
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import ColumnElement, Insert, Update
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from app.domain.enums import Desired
from app.store.changes import changes, note_change
from app.store.models import Base, Network, Node, NodeStatusChange, Operation, Tenant, utcnow

# A node's pod facts, in the order of app.cluster.pods.PodObservation's fields.
POD_COLUMNS = (Node.pod_name, Node.pod_phase, Node.pod_ready, Node.restart_count,
               Node.pod_reason, Node.pod_message, Node.pod_ip, Node.pod_started_at)  # fmt: skip


# The statements of a mutation's answer path, built once: building one costs more than SQLite
# takes to run it (an expression tree of a few comparisons is tens of microseconds of Python).
# Their values are bound when they run; for those run through the session, the change counter
# (app/store/changes.py) reads them from there.
_OBJECT_NAME_OWNER = (
    select(Network.name, Node.name)
    .join(Node, Node.network_id == Network.id)
    .where(Network.tenant_id == bindparam("tenant_id"))
    .where(Network.name.in_(bindparam("prefixes", expanding=True)))
    .where(Network.name + "-" + Node.name == bindparam("object_name"))
    .limit(1)
)


def _adding_to_counts(tenant: ColumnElement[str]) -> Update:
    """UPDATE of a tenant's counts, adding the values bound as ``networks`` and ``nodes``."""
    return (
        update(Tenant)
        .where(Tenant.id == tenant)
        .values(
            network_count=Tenant.network_count + bindparam("networks"),
            node_count=Tenant.node_count + bindparam("nodes"),
        )
        .execution_options(synchronize_session=False)
    )


# The tenant's row, locked and counted up in one statement (UPDATE takes the row's lock on
# PostgreSQL; on SQLite a unit of work holds the database's write lock already), returning
# what a mutation checks: the new counts, the limits, and the state of any network of the
# tenant already named ``name``.
_CLAIM = _adding_to_counts(bindparam("tenant_id")).returning(
    Tenant.network_count,
    Tenant.node_count,
    Tenant.max_networks,
    Tenant.max_nodes,
    select(Network.desired)
    .where(Network.tenant_id == bindparam("tenant_id"), Network.name == bindparam("network_name"))
    .scalar_subquery(),
)
_COUNT_BY_NETWORK = _adding_to_counts(
    select(Network.tenant_id).where(Network.id == bindparam("network_id")).scalar_subquery()
)


@dataclass(frozen=True)
class Room:
    """A tenant's counts with a mutation's new rows counted in, its limits, and the desired
    state of the network already bearing the new network's name (None: no such network)."""

    networks: int
    nodes: int
    max_networks: int
    max_nodes: int
    named: Desired | None


async def claim(
    session: AsyncSession, tenant_id: str, *, networks: int, nodes: int, name: str | None = None
) -> Room | None:
    """Count ``networks`` and ``nodes`` more for the tenant, locking its row until the
    transaction ends, so that concurrent mutations take turns between checking the limits and
    inserting; None for no such tenant. One statement: the caller checks the ``Room`` and,
    if it refuses, rolls back, which takes the counts back down.

    ``name``: a network about to be created, whose name is looked up in the same statement
    (as committed when the statement began: a name taken meanwhile, by a create that held the
    lock first, fails the insert's unique constraint instead)."""
    values = {"tenant_id": tenant_id, "networks": networks, "nodes": nodes, "network_name": name}
    row = (await (await session.connection()).execute(_CLAIM, values)).first()
    if row is None:
        return None
    note_change(session.sync_session, tenant_id)  # the session does not see Core statements
    return Room(*row)


async def network_of_tenant(
    session: AsyncSession, tenant_id: str, network_id: str
) -> Network | None:
    network = await session.get(Network, network_id)
    return network if network is not None and network.tenant_id == tenant_id else None


async def node_of_tenant(
    session: AsyncSession, tenant_id: str, node_id: str
) -> tuple[Node, Network] | None:
    row = (
        await session.execute(
            select(Node, Network)
            .join(Network)
            .where(Node.id == node_id, Network.tenant_id == tenant_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def node_named(session: AsyncSession, network_id: str, name: str) -> Node | None:
    return await session.scalar(
        select(Node).where(Node.network_id == network_id, Node.name == name)
    )


async def object_name_owner(
    session: AsyncSession, tenant_id: str, object_name: str, absent: str | None = None
) -> tuple[str, str] | None:
    """(network, node) of the tenant's node whose objects are named ``object_name``, if any;
    ``absent`` names a network the caller knows does not exist (the one it is creating).

    Object names are unique per namespace and a tenant has a namespace of its own, so a new
    node's ``<network>-<node>`` must not equal any other node's of the same tenant: network
    ``a`` with node ``b-coordinator`` and network ``a-b``'s coordinator would collide.
    """
    # Only networks named like a prefix of it before a "-" can own it: found by the unique
    # index on (tenant_id, name), not by a scan of all the tenant's nodes. A new network's
    # coordinator whose name has no "-" has no such prefix but its own: no query at all.
    prefixes = [object_name[:i] for i, c in enumerate(object_name) if c == "-"]
    prefixes = [prefix for prefix in prefixes if prefix != absent]
    if not prefixes:
        return None
    values = {"tenant_id": tenant_id, "prefixes": prefixes, "object_name": object_name}
    row = (await session.execute(_OBJECT_NAME_OWNER, values)).first()
    return (row[0], row[1]) if row else None


async def nodes_of(session: AsyncSession, network_id: str) -> list[Node]:
    return list(await session.scalars(select(Node).where(Node.network_id == network_id)))


async def tenant_counts(session: AsyncSession, tenant_id: str) -> tuple[int, int]:
    """How many networks and nodes the tenant has (those being deleted included), counted;
    one query. A mutation reads the tenant's kept counts instead (``Tenant.network_count``)."""
    networks = select(func.count()).select_from(Network).where(Network.tenant_id == tenant_id)
    nodes = select(func.count()).select_from(Node).join(Network)
    nodes = nodes.where(Network.tenant_id == tenant_id)
    row = (await session.execute(select(networks.scalar_subquery(), nodes.scalar_subquery()))).one()
    return row[0] or 0, row[1] or 0


async def pod_facts_in_namespace(
    session: AsyncSession, namespace: str
) -> dict[str, tuple[Any, ...]]:
    """The recorded pod facts (``POD_COLUMNS``) of every node of the tenant whose namespace is
    ``namespace``, by node id: one statement, whatever the number of nodes."""
    rows = await session.execute(
        select(Node.id, *POD_COLUMNS)
        .join(Network, Node.network_id == Network.id)
        .join(Tenant, Network.tenant_id == Tenant.id)
        .where(Tenant.namespace == namespace)
    )
    return {row[0]: tuple(row[1:]) for row in rows}


async def node_with_network(
    session: AsyncSession, node_id: str, *, lock: bool = False
) -> tuple[Node, Network] | None:
    """The node and its network, in one statement; with ``lock``, the node's row is locked
    until the transaction ends where the database can (PostgreSQL's FOR UPDATE OF nodes;
    SQLite has no row locks, so writers there rely on ``claim_revision``)."""
    query = _NODE_WITH_NETWORK.with_for_update(of=Node) if lock else _NODE_WITH_NETWORK
    row = (await session.execute(query, {"node_id": node_id})).first()
    return None if row is None else (row[0], row[1])


_NODE_WITH_NETWORK = (
    select(Node, Network)
    .join(Network, Node.network_id == Network.id)
    .where(Node.id == bindparam("node_id"))
)


async def insert(
    session: AsyncSession, tenant_id: str, *rows: Network | Node | NodeStatusChange | Operation
) -> None:
    """Insert new ``rows`` of the tenant now, so a name race surfaces here as IntegrityError;
    the caller has counted them in already (``claim``).

    Core INSERTs, in the order given (parents first), not the session's unit of work: on a
    mutation's answer path its flush of four rows took 1.05 ms, these 0.46 ms (a script's
    timing, alternating). So the rows stay out of the session: a flush would insert them
    again. Each row gets its columns' Python defaults first (ids, timestamps), as a flush
    would give them, so the caller can build its answer from them."""
    statements = [(_INSERTS[type(row)], _with_defaults(row)) for row in rows]

    def run(connection: Connection) -> None:  # all in one greenlet: 16 us a statement less
        for statement, values in statements:
            connection.execute(statement, values)

    await (await session.connection()).run_sync(run)
    note_change(session.sync_session, tenant_id)  # the session does not see Core statements


_INSERTS: dict[type[Base], Insert] = {
    model: sa_insert(model) for model in (Network, Node, NodeStatusChange, Operation)
}


def _with_defaults(row: Base) -> dict[str, Any]:
    """The row's column values, its columns' Python defaults set where it has none (on the
    row too); a column left None is left out, for the database to fill (an autoincrement)."""
    values: dict[str, Any] = {}
    given = row.__dict__  # what the constructor set: read without the attributes' machinery
    for key, column, default in _columns(type(row)):
        value = given.get(key)
        if value is None and default is not None:
            value = default()
            set_committed_value(row, key, value)
        if value is not None:
            values[column] = value
    return values


def _constant(value: Any) -> Any:
    return value


@functools.cache
def _columns(model: type[Base]) -> tuple[tuple[str, str, Callable[[], Any] | None], ...]:
    """Per column of ``model``: its attribute's name, its column's name and its Python default
    as a function of nothing (None for none), looked up once per model."""
    found = []
    for attribute in sa_inspect(model).column_attrs:
        column = attribute.columns[0]
        default: Callable[[], Any] | None = None
        if isinstance(column.default, ScalarElementColumnDefault):
            default = functools.partial(_constant, column.default.arg)
        elif isinstance(column.default, CallableColumnDefault):
            # ours take no context: the wrapper SQLAlchemy made of them ignores it
            default = functools.partial(column.default.arg, None)  # type: ignore[arg-type]
        found.append((attribute.key, column.key, default))
    return tuple(found)


async def _count_by_network(
    session: AsyncSession, network_id: str, networks: int, nodes: int
) -> None:
    """Add ``networks`` and ``nodes`` to the counts of the tenant of ``network_id`` (through the
    session: the change counter finds the tenant from the network's id)."""
    values = {"network_id": network_id, "networks": networks, "nodes": nodes}
    await session.execute(_COUNT_BY_NETWORK, values)


async def claim_revision(session: AsyncSession, node: Node, tenant_id: str) -> bool:
    """Compare-and-set: write the node's changed columns and bump its revision, if no other
    writer bumped it since ``node`` was read. False means the row changed (or vanished) under
    us: start over from a fresh read.

    This is what makes two writers of one node safe on every database: the loser's UPDATE
    matches no row instead of overwriting the winner's facts with an older derivation.

    One Core UPDATE carries the new facts and the revision together; with the node and its
    network read in one SELECT, a control-loop write took 3.9 and 3.1 ms where the session's
    flush of the row and a second UPDATE for the revision took 5.2 and 4.1 (a script's timing,
    alternating, on a slow machine). The row's attributes are then marked as written, so the session
    does not write them again; the change is counted for ``tenant_id`` (the session does not
    see Core statements)."""
    seen = node.revision
    state = sa_inspect(node)
    columns = _node_columns()
    changed = [key for key in state.committed_state if key in columns]
    values: dict[str, Any] = {columns[key]: state.dict[key] for key in changed}
    values["revision"], values["updated_at"] = seen + 1, utcnow()
    statement = (
        update(_NODES).where(_NODES.c.id == node.id, _NODES.c.revision == seen).values(values)
    )
    result = await (await session.connection()).execute(statement)
    if result.rowcount != 1:
        return False
    for key in changed:
        set_committed_value(node, key, state.dict[key])
    set_committed_value(node, "revision", seen + 1)
    set_committed_value(node, "updated_at", values["updated_at"])
    note_change(session.sync_session, tenant_id)
    changes.remember(node.id, tenant_id)  # its history entry's flush needs no lookup
    return True


_NODES = cast(Table, Node.__table__)


@functools.cache
def _node_columns() -> dict[str, str]:
    """A node's attribute names and the names of their columns."""
    return {attribute: column for attribute, column, _ in _columns(Node)}


def record_status(session: AsyncSession, change: NodeStatusChange) -> None:
    """Add one transition to a node's history (written with the unit of work)."""
    session.add(change)


async def delete_node(session: AsyncSession, node_id: str) -> None:
    deleted = delete(Node).where(Node.id == node_id).returning(Node.network_id)
    network_id = await session.scalar(deleted.execution_options(synchronize_session=False))
    if network_id is not None:
        await _count_by_network(session, network_id, 0, -1)


async def delete_network_if_empty(session: AsyncSession, network_id: str) -> bool:
    """Delete the network's row if it has no node left; True if it did."""
    if await session.scalar(select(Node.id).where(Node.network_id == network_id)) is not None:
        return False
    await _count_by_network(session, network_id, -1, 0)
    await session.execute(delete(Network).where(Network.id == network_id))
    return True
