"""The guards every request passes (depth, aliases, tokens), error masking, the offline
GraphiQL page and introspection outside production."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from app.store import reads as db_queries
from schema.build import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from tests.helpers import GraphQLClient

# Object fields that nest as deep as one likes: networks > edges > node > nodes > edges > ...
CHAIN = ["networks", "edges", "node", *["nodes", "edges", "node", "network"] * MAX_DEPTH]


def nested(depth: int) -> str:
    """A query of ``depth`` nested object fields and a leaf."""
    query = "__typename"
    for field in reversed(CHAIN[:depth]):
        query = f"{field} {{ {query} }}"
    return f"{{ {query} }}"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


def tokens(count: int) -> str:
    """A document of exactly ``count`` tokens: many small operations, ``q0`` the first.

    (A thousand sibling fields in one selection would trip graphql-core's own validation
    budget before our token limit.)
    """
    operations, rest = divmod(count, 5)  # query qN { __typename }
    return "".join(
        f"query q{i} {{ {'__typename ' * (1 + (rest if i == 0 else 0))}}}\n"
        for i in range(operations)
    )


async def error_message(api: GraphQLClient, document: str) -> str:
    body = await api.execute(document)
    assert body.get("data") is None
    (error,) = body["errors"]
    message: str = error["message"]
    return message


async def test_a_query_at_the_depth_limit_runs(api: GraphQLClient) -> None:
    assert (await api.data(nested(MAX_DEPTH)))["networks"]["edges"] == []


async def test_a_query_deeper_than_the_limit_is_refused(api: GraphQLClient) -> None:
    message = await error_message(api, nested(MAX_DEPTH + 1))
    assert "depth" in message
    assert str(MAX_DEPTH) in message


async def test_aliases_up_to_the_limit_run(api: GraphQLClient) -> None:
    assert len(await api.data(aliases(MAX_ALIASES))) == MAX_ALIASES


async def test_more_aliases_than_the_limit_are_refused(api: GraphQLClient) -> None:
    message = await error_message(api, aliases(MAX_ALIASES + 1))
    assert "aliases" in message
    assert str(MAX_ALIASES) in message


async def test_tokens_up_to_the_limit_run(api: GraphQLClient) -> None:
    response = await api.http.post(
        "/graphql", json={"query": tokens(MAX_TOKENS), "operationName": "q0"}
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_more_tokens_than_the_limit_are_refused(api: GraphQLClient) -> None:
    response = await api.http.post(
        "/graphql", json={"query": tokens(MAX_TOKENS + 1), "operationName": "q0"}
    )
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    message = error["message"]
    assert "tokens" in message
    assert str(MAX_TOKENS) in message


async def test_an_unexpected_error_is_masked(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(db_queries, "networks_page", broken)  # what schema.queries calls
    response = await api.http.post("/graphql", json={"query": "{ networks { totalCount } }"})
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["message"] == "Unexpected error."
    assert error["path"] == ["networks"]
    assert "secret detail" not in response.text
    assert "RuntimeError" not in response.text
    # ... but the operator can still find out what happened.
    assert any(
        r.name == "qaas.graphql" and "secret detail" in str(r.exc_info) for r in caplog.records
    )


async def test_a_client_error_is_not_masked(api: GraphQLClient) -> None:
    message = await error_message(api, "{ networks(first: 0) { totalCount } }")
    assert message.startswith("`first`")


async def test_syntax_and_validation_errors_are_shown(api: GraphQLClient) -> None:
    assert "Syntax Error" in await error_message(api, "{ networks {")
    assert "nope" in await error_message(api, "{ nope }")


async def test_graphiql_is_served_without_a_cdn(api: GraphQLClient) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/graphiql-assets/" in page
    assert not re.search(r"https?://", page)


async def test_introspection_is_on_outside_production(api: GraphQLClient) -> None:
    data = await api.data(
        """{
          __schema { queryType { name } mutationType { name } subscriptionType { name } }
          __type(name: "Network") { fields { name } }
        }"""
    )
    assert data["__schema"] == {
        "queryType": {"name": "Query"},
        "mutationType": {"name": "Mutation"},
        "subscriptionType": {"name": "Subscription"},
    }
    fields = {f["name"] for f in data["__type"]["fields"]}
    assert {"id", "name", "consensus", "status", "nodes"} <= fields


@pytest.mark.parametrize(
    "document",
    [
        nested(MAX_DEPTH + 1),
        aliases(200),
        "{ networks { " + "edges " * 40,
        "{ nope " + "__typename " * 30 + "}",
    ],
    ids=["too deep", "200 aliases", "syntax error", "unknown field"],
)
async def test_a_client_mistake_is_logged_short_at_info(
    api: GraphQLClient, caplog: pytest.LogCaptureFixture, document: str
) -> None:
    caplog.set_level(logging.INFO)
    await error_message(api, document)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    (said,) = [r for r in caplog.records if r.name == "qaas.graphql"]
    assert said.levelno == logging.INFO
    assert said.exc_info is None
    line = said.getMessage()
    assert "query sha256:" in line
    assert document not in line
    assert len(line) < 400


async def test_an_unexpected_error_is_logged_at_error_with_its_traceback(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(db_queries, "networks_page", broken)
    await api.execute("{ networks { totalCount } }")
    (said,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert said.name == "qaas.graphql"
    assert said.exc_info is not None
    assert "RuntimeError" in logging.Formatter().formatException(said.exc_info)
