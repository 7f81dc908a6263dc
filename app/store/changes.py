"""Which tenants' data changed, counted in this process once each change has committed.

Every ORM session of the process reports here, whatever code path wrote (mutations, the node
writer of the observer and the reconciler, the chain recorder, operations, tenants, tokens and
their last use): a flush notes the tenants of its new, changed and deleted rows, an UPDATE,
DELETE or INSERT statement run through a session notes the tenants its WHERE clause names (a
``tenant_id``, a ``network_id`` or ``node_id``, or the id of a tenant, network, node, operation
or token, also when bound at execution; a statement that names none counts as a change of
every tenant). SQL text is not looked at: write through the models or
``update()``/``delete()``/``insert()``. A statement run on the session's connection instead
(Core, which the session does not see) is noted by its writer with ``note_change``, as the
answer path's inserts are (``app/store/desired.py``). A commit then
moves the clock forward for those tenants; a rollback forgets them. Nothing is counted before
the commit.

A reader takes ``ticket()`` before it reads and may keep what it read only while
``changed_since(tenant_id, ticket)`` is false: a change committed during its read makes it
true. Writes made by other processes (the ``qaas`` CLI, another replica) or outside an ORM
session are not seen here; readers bound those with a time limit.

Example::

    ticket = changes.ticket()
    page = await reads.networks_page(session, tenant_id, 50, None)
    if not changes.changed_since(tenant_id, ticket):
        keep(page)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, event, select
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, ColumnElement
from sqlalchemy.sql.schema import Column

from app.store.models import ApiToken, Network, Node, NodeStatusChange, Operation, Tenant

EVERYONE = "*"  # a change no tenant could be found for: it counts for all of them
PENDING = "qaas.changed_tenants"  # in Session.info: tenants changed by the open transaction
OWNERS_MAX = 100_000  # remembered network and node owners (ids are never reused)


class Changes:
    """A clock of committed changes per tenant (O(1) to read, safe within one event loop)."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self._now = 0
        self._changed: dict[str, int] = {}  # tenant id (or EVERYONE) -> clock of its last change
        # Which tenant owns a network or node id: they never change owner.
        self._owners: dict[str, str] = {}

    def ticket(self) -> int:
        return self._now

    def changed_since(self, tenant_id: str, ticket: int) -> bool:
        changed = self._changed
        return changed.get(tenant_id, 0) > ticket or changed.get(EVERYONE, 0) > ticket

    def committed(self, tenant_ids: Iterable[str]) -> None:
        now = self._now = next(self._clock)
        for tenant_id in tenant_ids:
            self._changed[tenant_id] = now

    def owner(self, object_id: str) -> str | None:
        return self._owners.get(object_id)

    def remember(self, object_id: str, tenant_id: str) -> None:
        if len(self._owners) >= OWNERS_MAX:
            self._owners.clear()
        self._owners[object_id] = tenant_id


changes = Changes()  # the process's


def _pending(session: Session) -> set[str]:
    found: set[str] | None = session.info.get(PENDING)
    if found is None:
        found = session.info[PENDING] = set()
    return found


def note_change(session: Session, tenant_id: str) -> None:
    """Count a change of the tenant when the session's transaction commits: for statements run
    on the session's connection, which the session does not see."""
    _pending(session).add(tenant_id)


def _owners_of(session: Session, kind: type[Network] | type[Node], ids: set[str]) -> set[str]:
    """The tenants owning these networks or nodes: remembered, or looked up in the open
    transaction; EVERYONE if one cannot be found (a row already deleted)."""
    if kind is Network:  # loaded in this session already?
        for network_id in ids:
            loaded = session.identity_map.get(identity_key(Network, network_id))
            if isinstance(loaded, Network):
                changes.remember(network_id, loaded.tenant_id)
    found = {owner for i in ids if (owner := changes.owner(i)) is not None}
    unknown = [i for i in ids if changes.owner(i) is None]
    if not unknown:
        return found
    if kind is Network:
        query = select(Network.id, Network.tenant_id).where(Network.id.in_(unknown))
    else:
        query = select(Node.id, Network.tenant_id).join(Network).where(Node.id.in_(unknown))
    rows = session.connection().execute(query).all()
    for object_id, tenant_id in rows:
        changes.remember(object_id, tenant_id)
        found.add(tenant_id)
    if len(rows) < len(unknown):
        found.add(EVERYONE)
    return found


def _tenants_of_rows(session: Session, rows: Iterable[object]) -> set[str]:
    tenants: set[str] = set()
    networks: set[str] = set()
    nodes: set[str] = set()
    flushed_nodes: list[Node] = []
    for row in rows:
        if isinstance(row, Tenant):
            tenants.add(row.id)
        elif isinstance(row, Network | Operation | ApiToken):
            tenants.add(row.tenant_id)
            if isinstance(row, Network):
                changes.remember(row.id, row.tenant_id)
        elif isinstance(row, Node):
            networks.add(row.network_id)
            flushed_nodes.append(row)
        elif isinstance(row, NodeStatusChange):
            nodes.add(row.node_id)
        else:
            tenants.add(EVERYONE)
    if networks:
        tenants |= _owners_of(session, Network, networks)
    for node in flushed_nodes:  # their history entries, flushed next, then cost no query
        if (owner := changes.owner(node.network_id)) is not None:
            changes.remember(node.id, owner)
    if nodes:
        tenants |= _owners_of(session, Node, nodes)
    return tenants


def _named(
    where: ColumnElement[Any] | None, bound: Mapping[str, Any]
) -> dict[tuple[str, str], set[str]]:
    """The values ``table.column = value`` (or ``IN (...)``) comparisons in a WHERE clause
    name, by (table, column); a ``bindparam()`` built without its value takes it from
    ``bound``, the parameters the statement runs with."""
    named: dict[tuple[str, str], set[str]] = {}
    if where is None:
        return named
    for element in visitors.iterate(where):
        if not isinstance(element, BinaryExpression):
            continue
        column, value = element.left, element.right
        if not (isinstance(column, Column) and isinstance(value, BindParameter)):
            continue
        if not isinstance(column.table, Table):
            continue
        given = bound.get(value.key, value.value)
        values = given if isinstance(given, list | tuple) else [given]
        if found := {str(v) for v in values if v is not None}:  # none: it names no one
            named.setdefault((column.table.name, column.name), set()).update(found)
    return named


def _tenants_of_statement(session: Session, state: ORMExecuteState) -> set[str]:
    bound = state.parameters if isinstance(state.parameters, Mapping) else {}
    named = _named(getattr(state.statement, "whereclause", None), bound)
    for (table, column), values in named.items():
        if column == "tenant_id" or (table, column) == ("tenants", "id"):
            return set(values)
    for (table, column), values in named.items():
        if column == "network_id" or (table, column) == ("networks", "id"):
            return _owners_of(session, Network, values)
        if column == "node_id" or (table, column) == ("nodes", "id"):
            return _owners_of(session, Node, values)
    for model in (Operation, ApiToken):
        if ids := named.get((model.__tablename__, "id")):
            query = select(model.tenant_id).where(model.id.in_(ids))
            return set(session.connection().execute(query).scalars()) or {EVERYONE}
    return {EVERYONE}


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _flush: UOWTransaction) -> None:
    # A row is dirty once an attribute was set, even to the value it had: only a real change
    # counts (the observer and the reconciler set facts they may already have).
    changed = [row for row in session.dirty if session.is_modified(row)]
    rows = [*session.new, *changed, *session.deleted]
    if rows:
        _pending(session).update(_tenants_of_rows(session, rows))


@event.listens_for(Session, "do_orm_execute")
def _executing(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete or state.is_insert:
        _pending(state.session).update(_tenants_of_statement(state.session, state))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    tenants = session.info.pop(PENDING, None)
    if tenants:
        changes.committed(tenants)


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost: committed (counted above) or rolled back
        session.info.pop(PENDING, None)
