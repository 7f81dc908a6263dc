"""The SDL in schema/schema.graphql is the schema the code builds, and keeps the contract's names.

Regenerate the file after a schema change with:

    .venv/bin/python -c "from schema.build import build_schema; print(build_schema().as_str())" > schema/schema.graphql
"""  # noqa: E501

from __future__ import annotations

from pathlib import Path

import graphql
import pytest

from schema.build import build_schema

SDL_PATH = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"
REGENERATE = (
    '.venv/bin/python -c "from schema.build import build_schema; '
    'print(build_schema().as_str())" > schema/schema.graphql'
)


@pytest.fixture(scope="module")
def pinned() -> str:
    return SDL_PATH.read_text()


@pytest.fixture(scope="module")
def sdl(pinned: str) -> graphql.GraphQLSchema:
    return graphql.build_schema(pinned)


def _object(sdl: graphql.GraphQLSchema, name: str) -> graphql.GraphQLObjectType:
    found = sdl.get_type(name)
    assert isinstance(found, graphql.GraphQLObjectType), f"no object type {name} in the SDL"
    return found


def test_pinned_sdl_matches_the_code(pinned: str) -> None:
    assert pinned == build_schema().as_str() + "\n", (
        f"{SDL_PATH} is out of date; regenerate it from the project root with:\n{REGENERATE}"
    )


def test_pinned_sdl_ends_with_one_newline(pinned: str) -> None:
    assert pinned.endswith("}\n"), f"regenerate it with:\n{REGENERATE}"


def test_mutations_of_the_contract(sdl: graphql.GraphQLSchema) -> None:
    mutations = _object(sdl, "Mutation").fields
    for name in ("networkCreate", "nodeAdd", "networkJoin", "nodeDelete", "networkDelete"):
        assert name in mutations
        assert "input" in mutations[name].args, name
        payload = graphql.get_named_type(mutations[name].type)
        assert isinstance(payload, graphql.GraphQLObjectType)
        assert str(payload.fields["userErrors"].type) == "[UserError!]!", name


@pytest.mark.parametrize(
    ("type_name", "fields"),
    [
        ("Network", {"id", "name", "consensus", "status", "nodes"}),
        ("Node", {"id", "name", "role", "status", "network"}),
        ("UserError", {"field", "message", "code"}),
    ],
)
def test_types_of_the_contract(
    sdl: graphql.GraphQLSchema, type_name: str, fields: set[str]
) -> None:
    assert fields <= set(_object(sdl, type_name).fields)


@pytest.mark.parametrize(
    ("enum_name", "values"),
    [("Consensus", {"RAFT", "IBFT"}), ("NodeRole", {"COORDINATOR", "PEER"})],
)
def test_enums_of_the_contract(
    sdl: graphql.GraphQLSchema, enum_name: str, values: set[str]
) -> None:
    enum = sdl.get_type(enum_name)
    assert isinstance(enum, graphql.GraphQLEnumType)
    assert set(enum.values) == values


def test_node_status_subscription(sdl: graphql.GraphQLSchema) -> None:
    subscription = _object(sdl, "Subscription").fields["nodeStatusChanged"]
    assert set(subscription.args) == {"networkId", "nodeId"}
    assert str(subscription.type) == "Node!"
