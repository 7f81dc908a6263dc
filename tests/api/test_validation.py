"""Mutations refuse bad input with a userError (field, message, code), create nothing, and
never answer with a top-level error."""

from __future__ import annotations

import uuid

import pytest

from schema.ids import to_global_id
from tests.api.queries import (
    NETWORK_CREATE,
    NETWORK_DELETE,
    NETWORK_JOIN,
    NODE_ADD,
    NODE_DELETE,
    USER_ERRORS,
    add_node,
    coordinator_id,
    create_network,
    hold_deletions,
    network_count,
    nodes_of,
    refused,
)
from tests.helpers import GraphQLClient

NAME = ["input", "name"]
BAD_NAMES = {
    "uppercase": "Acme",
    "underscore": "acme_test",
    "leading digit": "1acme",
    "leading dash": "-acme",
    "trailing dash": "acme-",
    "dot": "acme.test",
    "empty": "",
    "blank": "   ",
    "too long": "a" * 64,
}
# A network's coordinator is "<network>-coordinator", which must fit in 63 characters.
MAX_NETWORK = 63 - len("-coordinator")


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> None:
    hold_deletions(monkeypatch)


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_network_create_refuses_an_invalid_name(api: GraphQLClient, name: str) -> None:
    error = await refused(api, NETWORK_CREATE, name=name)
    assert (error["field"], error["code"]) == (NAME, "INVALID_NAME")
    assert await network_count(api) == 0


async def test_network_name_one_over_the_limit_is_refused(api: GraphQLClient) -> None:
    error = await refused(api, NETWORK_CREATE, name="a" * (MAX_NETWORK + 1))
    assert (error["field"], error["code"]) == (NAME, "INVALID_NAME")
    assert await network_count(api) == 0


async def test_network_name_at_the_limit_is_accepted(api: GraphQLClient) -> None:
    await create_network(api, "a" * MAX_NETWORK)
    assert await network_count(api) == 1


async def test_duplicate_network_name_is_taken(api: GraphQLClient) -> None:
    await create_network(api, "acme")
    error = await refused(api, NETWORK_CREATE, name="acme")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert "acme" in error["message"]
    assert await network_count(api) == 1


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
async def test_node_add_refuses_an_invalid_name(api: GraphQLClient, name: str) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    error = await refused(api, NODE_ADD, networkId=network_id, name=name)
    assert (error["field"], error["code"]) == (NAME, "INVALID_NAME")
    assert len(await nodes_of(api, network_id)) == 1


async def test_node_add_bounds_the_combined_object_name(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "n" * 40))["network"]["id"]
    await add_node(api, network_id, "p" * 22)  # "<40>-<22>": 63 characters
    error = await refused(api, NODE_ADD, networkId=network_id, name="q" * 23)
    assert (error["field"], error["code"]) == (NAME, "INVALID_NAME")
    assert "63" in error["message"]
    assert len(await nodes_of(api, network_id)) == 2


@pytest.mark.parametrize("name", ["peer", "coordinator"])
async def test_duplicate_node_name_is_taken(api: GraphQLClient, name: str) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    if name == "peer":
        await add_node(api, network_id, name)
    before = await nodes_of(api, network_id)
    error = await refused(api, NODE_ADD, networkId=network_id, name=name)
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert await nodes_of(api, network_id) == before


async def test_names_whose_objects_would_collide_are_taken(api: GraphQLClient) -> None:
    """Network "a"'s node "b-coordinator" and network "a-b"'s coordinator would both own the
    Service "a-b-coordinator": whichever comes second is refused, in either order."""
    first = (await create_network(api, "a"))["network"]["id"]
    await add_node(api, first, "b-coordinator")
    error = await refused(api, NETWORK_CREATE, name="a-b")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert '"a-b-coordinator"' in error["message"]
    await create_network(api, "c-d")
    second = (await create_network(api, "c"))["network"]["id"]
    error = await refused(api, NODE_ADD, networkId=second, name="d-coordinator")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert await network_count(api) == 3


async def test_same_node_name_in_two_networks_is_fine(api: GraphQLClient) -> None:
    first = (await create_network(api, "acme"))["network"]["id"]
    second = (await create_network(api, "globex"))["network"]["id"]
    assert (await add_node(api, first, "peer"))["name"] == "peer"
    assert (await add_node(api, second, "peer"))["name"] == "peer"


@pytest.mark.parametrize("ip", ["0.0.0.0", "127.0.0.1", "not-an-ip", "::1", "224.0.0.1", ""])
async def test_network_join_refuses_an_unusable_coordinator_ip(api: GraphQLClient, ip: str) -> None:
    error = await refused(api, NETWORK_JOIN, name="remote", ip=ip)
    assert (error["field"], error["code"]) == (["input", "coordinatorIp"], "INVALID_IP")
    assert await network_count(api) == 0


async def test_network_join_checks_names(api: GraphQLClient) -> None:
    error = await refused(api, NETWORK_JOIN, name="Remote", ip="10.1.2.3")
    assert (error["field"], error["code"]) == (NAME, "INVALID_NAME")
    error = await refused(api, NETWORK_JOIN, name="remote", ip="10.1.2.3", nodeName="Peer")
    assert (error["field"], error["code"]) == (["input", "nodeName"], "INVALID_NAME")
    error = await refused(api, NETWORK_JOIN, name="r" * 40, ip="10.1.2.3", nodeName="p" * 23)
    assert (error["field"], error["code"]) == (["input", "nodeName"], "INVALID_NAME")
    await create_network(api, "acme")
    error = await refused(api, NETWORK_JOIN, name="acme", ip="10.1.2.3")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert await network_count(api) == 1


@pytest.mark.parametrize("kind", ["malformed", "a Node ID"])
async def test_node_add_refuses_an_id_that_is_not_a_network_id(
    api: GraphQLClient, kind: str
) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    bad = "not-an-id" if kind == "malformed" else (await add_node(api, network_id, "peer"))["id"]
    error = await refused(api, NODE_ADD, networkId=bad, name="other")
    assert (error["field"], error["code"]) == (["input", "networkId"], "INVALID_ID")


async def test_node_add_to_an_unknown_network_is_not_found(api: GraphQLClient) -> None:
    unknown = to_global_id("Network", str(uuid.uuid4()))
    error = await refused(api, NODE_ADD, networkId=unknown, name="peer")
    assert (error["field"], error["code"]) == (["input", "networkId"], "NOT_FOUND")
    assert await network_count(api) == 0


async def test_deletes_refuse_bad_and_unknown_ids(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    cases = [
        (NODE_DELETE, "garbage", "INVALID_ID"),
        (NODE_DELETE, network_id, "INVALID_ID"),
        (NODE_DELETE, to_global_id("Node", str(uuid.uuid4())), "NOT_FOUND"),
        (NETWORK_DELETE, "garbage", "INVALID_ID"),
        (NETWORK_DELETE, await coordinator_id(api, network_id), "INVALID_ID"),
        (NETWORK_DELETE, to_global_id("Network", str(uuid.uuid4())), "NOT_FOUND"),
    ]
    for document, bad_id, code in cases:
        error = await refused(api, document, id=bad_id)
        assert (error["field"], error["code"]) == (["input", "id"], code), bad_id
    assert await network_count(api) == 1
    assert len(await nodes_of(api, network_id)) == 1


async def test_the_coordinator_goes_only_with_its_network(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    error = await refused(api, NODE_DELETE, id=await coordinator_id(api, network_id))
    assert (error["field"], error["code"]) == (["input", "id"], "COORDINATOR")
    assert len(await nodes_of(api, network_id)) == 1


@pytest.mark.usefixtures("held")
async def test_deleting_a_node_twice_is_being_deleted(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    peer_id = (await add_node(api, network_id, "peer"))["id"]
    first = (await api.data(NODE_DELETE, id=peer_id))["nodeDelete"]
    assert first["userErrors"] == []
    error = await refused(api, NODE_DELETE, id=peer_id)
    assert (error["field"], error["code"]) == (["input", "id"], "BEING_DELETED")


async def test_a_coordinator_with_peers_is_refused_with_has_peers(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    await add_node(api, network_id, "peer")
    error = await refused(api, NODE_DELETE, id=await coordinator_id(api, network_id))
    assert (error["field"], error["code"]) == (["input", "id"], "HAS_PEERS")
    assert "1 other node" in error["message"]
    assert len(await nodes_of(api, network_id)) == 2


FORCED_DELETE = f"""
mutation($id: ID!) {{
  nodeDelete(input: {{id: $id, force: true}}) {{ operation {{ id }} {USER_ERRORS} }}
}}
"""


@pytest.mark.usefixtures("held")
async def test_force_takes_over_a_deletion_under_way_once(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    peer_id = (await add_node(api, network_id, "peer"))["id"]
    assert (await api.data(NODE_DELETE, id=peer_id))["nodeDelete"]["userErrors"] == []
    forced = (await api.data(FORCED_DELETE, id=peer_id))["nodeDelete"]
    assert forced["userErrors"] == []
    assert forced["operation"]["id"]
    error = await refused(api, FORCED_DELETE, id=peer_id)
    assert (error["field"], error["code"]) == (["input", "id"], "BEING_DELETED")


@pytest.mark.usefixtures("held")
async def test_a_network_being_deleted_refuses_changes(api: GraphQLClient) -> None:
    network_id = (await create_network(api, "acme"))["network"]["id"]
    peer_id = (await add_node(api, network_id, "peer"))["id"]
    assert (await api.data(NETWORK_DELETE, id=network_id))["networkDelete"]["userErrors"] == []

    error = await refused(api, NETWORK_DELETE, id=network_id)
    assert (error["field"], error["code"]) == (["input", "id"], "BEING_DELETED")
    error = await refused(api, NODE_DELETE, id=peer_id)
    assert (error["field"], error["code"]) == (["input", "id"], "BEING_DELETED")
    error = await refused(api, NODE_ADD, networkId=network_id, name="late")
    assert (error["field"], error["code"]) == (["input", "networkId"], "BEING_DELETED")
    error = await refused(api, NETWORK_CREATE, name="acme")
    assert (error["field"], error["code"]) == (NAME, "BEING_DELETED")
    error = await refused(api, NETWORK_JOIN, name="acme", ip="10.1.2.3")
    assert (error["field"], error["code"]) == (NAME, "BEING_DELETED")
    assert await network_count(api) == 1
    assert len(await nodes_of(api, network_id)) == 2


async def test_a_node_whose_objects_would_take_another_networks_coordinator_name_is_refused(
    api: GraphQLClient,
) -> None:
    # Network "a-b" runs "a-b-coordinator"; node "b-coordinator" of network "a" would too.
    await create_network(api, "a-b")
    network = (await create_network(api, "a"))["network"]
    error = await refused(api, NODE_ADD, networkId=network["id"], name="b-coordinator")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert '"a-b-coordinator"' in error["message"]
    assert len(await nodes_of(api, network["id"])) == 1


async def test_a_network_whose_coordinator_would_take_a_nodes_object_name_is_refused(
    api: GraphQLClient,
) -> None:
    network = (await create_network(api, "a"))["network"]
    await add_node(api, network["id"], "b-coordinator")
    error = await refused(api, NETWORK_CREATE, name="a-b")
    assert (error["field"], error["code"]) == (NAME, "NAME_TAKEN")
    assert 'node "b-coordinator" of network "a"' in error["message"]
    joined = await refused(api, NETWORK_JOIN, name="a-b", ip="10.1.2.3", nodeName="coordinator")
    assert (joined["field"], joined["code"]) == (["input", "nodeName"], "NAME_TAKEN")
    assert await network_count(api) == 1
