"""The per-request (per-WebSocket-connection) context and its DataLoaders.

DataLoaders cache by key, so loaders built here live exactly as long as the context: one HTTP
request, or a whole WebSocket connection. Subscriptions therefore build fresh loaders for each
event (``Context.fresh_loaders``) so they never serve a stale node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from strawberry.dataloader import DataLoader

from app.services.api_deps import ApiDeps
from app.services.connections import Connection
from app.services.tenancy import Principal
from app.store import node_pages, reads
from app.store.read_models import NetworkView, NodeView, OperationView, StatusChangeView

NodePageKey = tuple[str, int, str | None]  # network id, first, after
NodePages = dict[NodePageKey, reads.Page[NodeView]]


class Loaders:
    """DataLoaders that only ever find ``tenant_id``'s objects, each built on first use
    (a subscription event that selects no related object builds none)."""

    def __init__(self, deps: ApiDeps, tenant_id: str) -> None:
        self.sessions = deps.sessions
        self.tenant_id = tenant_id

    @cached_property
    def network(self) -> DataLoader[str, NetworkView | None]:
        async def load(ids: Sequence[str]) -> list[NetworkView | None]:
            async with self.sessions() as session:
                return await reads.networks_by_ids(session, self.tenant_id, ids)

        return DataLoader(load_fn=load)

    @cached_property
    def node(self) -> DataLoader[str, NodeView | None]:
        async def load(ids: Sequence[str]) -> list[NodeView | None]:
            async with self.sessions() as session:
                return await reads.nodes_by_ids(session, self.tenant_id, ids)

        return DataLoader(load_fn=load)

    @cached_property
    def node_page(self) -> DataLoader[NodePageKey, reads.Page[NodeView]]:
        """Keyed by (network id, first, after): the first pages of all networks in a batch
        come from one statement per distinct ``first`` (``node_pages.first_node_pages``); a page
        ``after`` a cursor costs a statement pair of its own. A bad cursor fails its key."""

        async def load(keys: Sequence[NodePageKey]) -> list[reads.Page[NodeView] | BaseException]:
            firsts: dict[int, list[str]] = defaultdict(list)
            for network_id, first, cursor in keys:
                if cursor is None:
                    firsts[first].append(network_id)
            found: dict[NodePageKey, reads.Page[NodeView] | BaseException] = {}
            async with self.sessions() as session:
                for first, ids in firsts.items():
                    pages = await node_pages.first_node_pages(session, self.tenant_id, ids, first)
                    found.update(((i, first, None), pages[i]) for i in ids)
                for key in keys:
                    if key not in found:
                        try:
                            found[key] = await reads.nodes_page(session, *key)
                        except reads.BadCursor as error:
                            found[key] = error
            return [found[key] for key in keys]

        return DataLoader(load_fn=load)

    @cached_property
    def coordinator(self) -> DataLoader[str, NodeView | None]:
        """A network's coordinator, by network id (for views whose coordinator was not read
        with them, see ``NetworkView.coordinator_known``)."""

        async def load(ids: Sequence[str]) -> list[NodeView | None]:
            async with self.sessions() as session:
                found = await reads.coordinators(session, self.tenant_id, ids)
            return [found.get(i) for i in ids]

        return DataLoader(load_fn=load)

    @cached_property
    def operation(self) -> DataLoader[str, OperationView | None]:
        async def load(ids: Sequence[str]) -> list[OperationView | None]:
            async with self.sessions() as session:
                return await reads.operations_by_ids(session, self.tenant_id, ids)

        return DataLoader(load_fn=load)

    @cached_property
    def history(self) -> DataLoader[tuple[str, int], list[StatusChangeView]]:
        """Keyed by (node id, how many of the newest changes): one statement per distinct
        count in a batch, bounded in SQL (``reads.status_history``)."""

        async def load(keys: Sequence[tuple[str, int]]) -> list[list[StatusChangeView]]:
            by_last: dict[int, list[str]] = defaultdict(list)
            for node_id, last in keys:
                by_last[last].append(node_id)
            found: dict[tuple[str, int], list[StatusChangeView]] = {}
            async with self.sessions() as session:
                for last, ids in by_last.items():
                    history = await reads.status_history(session, ids, last)
                    found.update(((i, last), history.get(i, [])) for i in ids)
            return [found[key] for key in keys]

        return DataLoader(load_fn=load)


@dataclass
class Context:
    deps: ApiDeps
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None
    principal: Principal | None = None
    auth_problem: str | None = None  # why there is no principal, said to the caller
    connection: Connection | None = None  # a WebSocket's place among the open connections
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = self.fresh_loaders()

    def authenticated(self, principal: Principal) -> None:
        self.principal, self.auth_problem = principal, None
        self.loaders = self.fresh_loaders()

    def still_open(self) -> bool:
        """False once this WebSocket connection was ended (its token revoked or expired)."""
        return self.connection is None or self.deps.connections.deliverable(self.connection)

    def fresh_loaders(self) -> Loaders:
        return Loaders(self.deps, self.principal.tenant_id if self.principal else "")
