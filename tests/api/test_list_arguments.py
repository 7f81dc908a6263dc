"""The list arguments a dashboard uses: networks filtered, ordered and paged backwards,
operations newest first; bad arguments are BAD_USER_INPUT; the statement count stays flat."""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import select, update

from app.domain.enums import NodeStatus, OperationKind, OperationState, Role
from app.services.tenancy import create_token
from app.store.models import Network, Node, Operation, utcnow
from schema.ids import to_global_id
from tests.api.test_statement_count import Service, counted, seed, service
from tests.helpers import GraphQLClient

__all__ = ["service"]  # the fixture, shared with test_statement_count

LIST = """
query($first: Int, $after: String, $last: Int, $before: String, $filter: NetworkFilter,
      $order: NetworkOrder! = CREATED_ASC) {
  networks(first: $first, after: $after, last: $last, before: $before, filter: $filter,
           orderBy: $order) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { name status nodes(first: 5) { edges { node { name } } } } }
  }
}
"""
OPERATIONS = """
query($first: Int, $after: String, $last: Int, $before: String, $net: ID,
      $state: OperationState) {
  operations(first: $first, after: $after, last: $last, before: $before, networkId: $net,
             state: $state) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { node { id kind state network { name } } }
  }
}
"""


def names(data: dict[str, Any]) -> list[str]:
    return [edge["node"]["name"] for edge in data["networks"]["edges"]]


async def error_code(api: GraphQLClient, query: str, **variables: Any) -> tuple[str, str]:
    body = await api.execute(query, **variables)
    (error,) = body["errors"]
    return error["extensions"]["code"], error["message"]


async def network_ids(service: Service) -> dict[str, str]:
    async with service.sessions() as session:
        return {n.name: n.id for n in await session.scalars(select(Network))}


async def _fail_network(service: Service, name: str) -> None:
    network_id = (await network_ids(service))[name]
    async with service.sessions.begin() as session:
        await session.execute(
            update(Node).where(Node.network_id == network_id).values(status=NodeStatus.FAILED)
        )


async def test_networks_are_ordered_and_filtered(service: Service) -> None:
    await seed(service, range(5), nodes=2)
    await _fail_network(service, "net-003")
    api = service.api
    assert names(await api.data(LIST)) == [f"net-{n:03}" for n in range(5)]  # as before
    assert names(await api.data(LIST, order="NAME_DESC")) == [
        f"net-{n:03}" for n in (4, 3, 2, 1, 0)
    ]
    assert names(await api.data(LIST, order="CREATED_DESC", first=2)) == ["net-004", "net-003"]
    found = await api.data(LIST, filter={"nameContains": "-00"}, order="NAME_ASC", first=2)
    assert names(found) == ["net-000", "net-001"]
    assert found["networks"]["totalCount"] == 5
    failed = await api.data(LIST, filter={"status": "FAILED"})
    assert names(failed) == ["net-003"]
    assert failed["networks"]["totalCount"] == 1
    running = await api.data(LIST, filter={"status": "RUNNING", "nameContains": "net-00"}, first=3)
    assert names(running) == ["net-000", "net-001", "net-002"]
    assert running["networks"]["totalCount"] == 4
    assert running["networks"]["pageInfo"]["hasNextPage"] is True
    after = running["networks"]["pageInfo"]["endCursor"]
    rest = await api.data(LIST, filter={"status": "RUNNING"}, first=3, after=after)
    assert names(rest) == ["net-004"]
    # LIKE's wildcards are plain characters here.
    assert names(await api.data(LIST, filter={"nameContains": "%"})) == []
    assert names(await api.data(LIST, filter={"nameContains": "_"})) == []


async def test_last_and_before_page_backwards_in_any_order(service: Service) -> None:
    await seed(service, range(5), nodes=1)
    api = service.api
    for order, expected in (("CREATED_ASC", range(5)), ("NAME_DESC", range(4, -1, -1))):
        everything = [f"net-{n:03}" for n in expected]
        tail = await api.data(LIST, last=2, order=order)
        assert names(tail) == everything[3:]
        info = tail["networks"]["pageInfo"]
        assert (info["hasPreviousPage"], info["hasNextPage"]) == (True, False)
        before = await api.data(LIST, last=2, before=info["startCursor"], order=order)
        assert names(before) == everything[1:3]
        head = await api.data(LIST, last=5, before=before["networks"]["pageInfo"]["startCursor"],
                              order=order)  # fmt: skip
        assert names(head) == everything[:1]
        assert head["networks"]["pageInfo"]["hasPreviousPage"] is False
        assert head["networks"]["pageInfo"]["hasNextPage"] is True
        # Forwards from the backward page's end meets the rest again.
        end = before["networks"]["pageInfo"]["endCursor"]
        assert names(await api.data(LIST, first=5, after=end, order=order)) == everything[3:]


async def test_bad_list_arguments_are_bad_user_input(service: Service) -> None:
    await seed(service, range(2), nodes=1)
    api = service.api
    by_name = await api.data(LIST, first=1, order="NAME_ASC")
    name_cursor = by_name["networks"]["pageInfo"]["endCursor"]
    for variables, said in (
        ({"first": 1, "last": 1}, "not both"),
        ({"first": 1, "before": name_cursor}, "`before` with `last`"),
        ({"last": 1, "after": name_cursor}, "`before` with `last`"),
        ({"after": "bm90IG91cnM="}, "not a valid cursor"),
        ({"before": "%%%"}, "not a valid cursor"),
        ({"after": name_cursor}, "not a valid cursor"),  # of another order
        ({"last": 0}, "`last` must be between 1 and 100"),
        ({"first": 101}, "`first` must be between 1 and 100"),
    ):
        code, message = await error_code(api, LIST, **variables)
        assert code == "BAD_USER_INPUT", (variables, message)
        assert said in message, (variables, message)
    assert (await error_code(api, OPERATIONS, net="bm9wZQ=="))[0] == "BAD_USER_INPUT"
    assert (await error_code(api, OPERATIONS, before="x" * 8))[0] == "BAD_USER_INPUT"


async def test_operations_newest_first_by_network_and_state(service: Service) -> None:
    await seed(service, range(2), nodes=1)
    networks = await network_ids(service)
    other, _, _ = await create_token(service.sessions, "other", Role.ADMIN, service.deps.settings)
    start = utcnow() - datetime.timedelta(minutes=10)
    rows = [
        Operation(tenant_id=service.tenant_id, kind=OperationKind.NETWORK_CREATE,
                  network_id=networks[f"net-00{i % 2}"],
                  state=OperationState.SUCCEEDED if i < 4 else OperationState.PENDING,
                  created_at=start + datetime.timedelta(seconds=i))
        for i in range(6)
    ] + [Operation(tenant_id=other.id, kind=OperationKind.NETWORK_CREATE,
                   network_id=networks["net-000"], created_at=start)]  # fmt: skip
    async with service.sessions.begin() as session:
        session.add_all(rows)
    api = service.api
    every = (await api.data(OPERATIONS))["operations"]
    assert every["totalCount"] == 6  # not the other tenant's
    newest_first = [to_global_id("Operation", row.id) for row in reversed(rows[:6])]
    assert [e["node"]["id"] for e in every["edges"]] == newest_first
    ours = (await api.data(OPERATIONS, state="PENDING"))["operations"]
    assert [e["node"]["state"] for e in ours["edges"]] == ["PENDING", "PENDING"]
    first_page = (await api.data(OPERATIONS, first=4))["operations"]
    assert first_page["pageInfo"]["hasNextPage"] is True
    back = await api.data(OPERATIONS, last=3, before=first_page["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in back["operations"]["edges"]] == [
        e["node"]["id"] for e in first_page["edges"][:3]
    ]
    assert back["operations"]["pageInfo"]["hasPreviousPage"] is False
    net_id = to_global_id("Network", networks["net-001"])
    by_network = (await api.data(OPERATIONS, net=net_id))["operations"]
    assert by_network["totalCount"] == 3
    assert {e["node"]["network"]["name"] for e in by_network["edges"]} == {"net-001"}


async def test_filtered_ordered_and_backward_lists_cost_flat_statements(service: Service) -> None:
    variables = {"filter": {"status": "RUNNING", "nameContains": "net"}, "order": "NAME_DESC"}
    costs: list[tuple[int, int, int]] = []
    for count in (1, 10):
        await seed(service, range(len(costs) * 1000, len(costs) * 1000 + count), nodes=2)
        _, forwards = await counted(service, LIST, **variables)
        _, backwards = await counted(service, LIST, last=5, order="CREATED_DESC")
        _, ops = await counted(service, OPERATIONS, last=5)
        costs.append((forwards, backwards, ops))
    assert costs[0] == costs[1], costs
