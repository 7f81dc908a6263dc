"""The per-request (per-WebSocket-connection) context and its DataLoaders.

DataLoaders cache by key, so loaders built here live exactly as long as the context: one HTTP
request, or a whole WebSocket connection. Subscriptions therefore build fresh loaders for each
event (``Context.fresh_loaders``) so they never serve a stale node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from app.db import queries
from app.runtime import Runtime
from app.tenancy import Principal
from app.views import NetworkView, NodeView, OperationView, StatusChangeView


@dataclass
class Loaders:
    network: DataLoader[str, NetworkView | None]
    node: DataLoader[str, NodeView | None]
    operation: DataLoader[str, OperationView | None]
    history: DataLoader[str, list[StatusChangeView]]


def make_loaders(runtime: Runtime, tenant_id: str) -> Loaders:
    """Loaders that only ever find ``tenant_id``'s objects."""
    sessions = runtime.sessions

    async def networks(ids: Sequence[str]) -> list[NetworkView | None]:
        async with sessions() as session:
            return await queries.networks_by_ids(session, tenant_id, ids)

    async def nodes(ids: Sequence[str]) -> list[NodeView | None]:
        async with sessions() as session:
            return await queries.nodes_by_ids(session, tenant_id, ids)

    async def operations(ids: Sequence[str]) -> list[OperationView | None]:
        async with sessions() as session:
            return await queries.operations_by_ids(session, tenant_id, ids)

    async def histories(ids: Sequence[str]) -> list[list[StatusChangeView]]:
        async with sessions() as session:
            found = await queries.status_history(session, ids)
        return [found.get(i, []) for i in ids]

    return Loaders(
        network=DataLoader(load_fn=networks),
        node=DataLoader(load_fn=nodes),
        operation=DataLoader(load_fn=operations),
        history=DataLoader(load_fn=histories),
    )


@dataclass
class Context:
    runtime: Runtime
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None
    principal: Principal | None = None
    auth_problem: str | None = None  # why there is no principal, said to the caller
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = self.fresh_loaders()

    def authenticated(self, principal: Principal) -> None:
        self.principal, self.auth_problem = principal, None
        self.loaders = self.fresh_loaders()

    def fresh_loaders(self) -> Loaders:
        return make_loaders(self.runtime, self.principal.tenant_id if self.principal else "")
