"""A change is executed once for all subscribers with the same selection (schema/fanout.py),
and sharing never crosses selections, variables or tenants, nor reorders changes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.config import Settings
from app.domain.enums import NodeStatus, Role
from app.events.bus import NodeChange
from app.services.tenancy import create_token
from app.store import reads
from app.store.read_models import NodeView
from schema.ids import raw_id_of
from tests.conftest import CallerTenant
from tests.helpers import eventually
from tests.live.conftest import LiveServer
from tests.live.test_subscription_lifecycle import bus_of
from tests.live.test_subscriptions_gql import CREATE, post
from tests.live.wsclient import Subscriber

SHORT = "subscription($id: ID) { nodeStatusChanged(networkId: $id) { id statusReason } }"
LONG = (
    "subscription($id: ID) { nodeStatusChanged(networkId: $id) "
    "{ id statusReason name network { name } } }"
)
_revisions = itertools.count(1000)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_ws_per_token": 50})


@dataclasses.dataclass
class Net:
    id: str  # global id
    coordinator: NodeView


@pytest.fixture
async def net(
    live: LiveServer, sessions: async_sessionmaker[AsyncSession], tenant: CallerTenant
) -> Net:
    """A network whose coordinator is RUNNING: no change of its own is under way."""
    network_id = (await post(live, CREATE, name="fan"))["networkCreate"]["network"]["id"]
    raw = raw_id_of(network_id, "Network")
    assert raw is not None

    async def running() -> NodeView | None:
        async with sessions() as session:
            views = await reads.nodes_of_network(session, tenant.id, raw)
        up = [v for v in views if v.status == NodeStatus.RUNNING]
        return up[0] if len(up) == len(views) == 1 else None

    return Net(network_id, await eventually(running, within=60))


def publish(live: LiveServer, view: NodeView, reason: str, tenant_id: str | None = None) -> None:
    """A change of the node, as the pod observer publishes it after its commit."""
    changed = dataclasses.replace(view, revision=next(_revisions), status_reason=reason)
    tenant = tenant_id or view.tenant_id
    bus_of(live).publish(NodeChange(view.id, view.network_id, tenant, changed))


@contextlib.asynccontextmanager
async def subscribers(
    live: LiveServer, specs: list[tuple[str, dict[str, Any], str]]
) -> AsyncIterator[list[Subscriber]]:
    """Subscribers (query, variables, token), each past its snapshot message(s)."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(Subscriber(live.ws_url, query, variables, token))
            for query, variables, token in specs
        ]
        yield opened


async def reasons_until(subscriber: Subscriber, last: str) -> list[str]:
    """The statusReason of every `next` until the one carrying ``last``."""
    seen: list[str] = []
    while not seen or seen[-1] != last:
        data = await asyncio.wait_for(subscriber.next(), 15)
        seen.append(data["nodeStatusChanged"]["statusReason"])
    return seen


async def next_with(subscriber: Subscriber, reason: str) -> dict[str, Any]:
    while True:
        data = await asyncio.wait_for(subscriber.next(), 15)
        node: dict[str, Any] = data["nodeStatusChanged"]
        if node["statusReason"] == reason:
            return node


def count_executions(monkeypatch: pytest.MonkeyPatch, reason: str) -> Callable[[], int]:
    """How many times graphql-core executed a selection on a node carrying ``reason``."""
    calls = 0
    original = StrawberryGraphQLCoreExecutionContext.execute_operation

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if getattr(self.root_value, "status_reason", None) == reason:
            calls += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "execute_operation", counting)
    return lambda: calls


async def test_identical_subscribers_share_one_execution_per_change(
    live: LiveServer, net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = [(LONG, {"id": net.id}, live.token)] * 6
    async with subscribers(live, specs) as many:
        await asyncio.gather(*(s.next() for s in many))  # the snapshots
        executions = count_executions(monkeypatch, "shared")
        publish(live, net.coordinator, "shared")
        received = await asyncio.gather(*(next_with(s, "shared") for s in many))
    assert executions() == 1
    assert all(node == received[0] for node in received)
    assert received[0]["network"] == {"name": "fan"}


async def test_changes_arrive_in_order_and_a_burst_coalesces(live: LiveServer, net: Net) -> None:
    specs = [(SHORT, {"id": net.id}, live.token)] * 3
    async with subscribers(live, specs) as many:
        await asyncio.gather(*(s.next() for s in many))
        publish(live, net.coordinator, "first")
        firsts = await asyncio.gather(*(reasons_until(s, "first") for s in many))
        publish(live, net.coordinator, "second")  # superseded before anyone reads it
        publish(live, net.coordinator, "third")
        thirds = await asyncio.gather(*(reasons_until(s, "third") for s in many))
    assert all(seen[-1:] == ["first"] for seen in firsts)
    assert thirds == [["third"]] * 3


async def test_selections_variables_and_tenants_get_their_own_payloads(
    live: LiveServer, net: Net, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    other = settings.model_copy(update={"namespace": f"{settings.namespace}-b"})
    tenant_b, _, token_b = await create_token(sessions, "beta", Role.ADMIN, other, "b")
    # The same document without a network: every node of the tenant.
    all_nodes: tuple[str, dict[str, Any], str] = (LONG, {}, live.token)
    specs = [
        (SHORT, {"id": net.id}, live.token),
        (LONG, {"id": net.id}, live.token),
        all_nodes,
        (all_nodes[0], {}, token_b),  # the same document and variables, another tenant
    ]
    async with subscribers(live, specs) as (short, long, every, beta):
        await asyncio.gather(short.next(), long.next(), every.next())  # beta has no node
        publish(live, net.coordinator, "a")
        got_short, got_long, got_every = await asyncio.gather(
            next_with(short, "a"), next_with(long, "a"), next_with(every, "a")
        )
        # A node of the other tenant (named like ours, in a network id it cannot see).
        publish(live, net.coordinator, "b", tenant_id=tenant_b.id)
        got_beta = (await asyncio.wait_for(beta.next(), 15))["nodeStatusChanged"]
    assert set(got_short) == {"id", "statusReason"}
    assert got_long["network"] == {"name": "fan"}
    assert got_every == got_long
    assert got_beta["statusReason"] == "b"  # its first message: it never saw tenant a's change
    assert got_beta["network"] is None  # rendered with its own tenant's loaders
