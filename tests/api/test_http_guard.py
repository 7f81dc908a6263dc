"""Hostile HTTP input is bounded before any work: the body limit (413), authentication before
the body is read or anything parsed (401), malformed requests (400): each a JSON error, never
a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from strawberry.extensions.parser_cache import _get_parse_cache

from schema.build import CACHE_SIZE
from tests.helpers import GraphQLClient

LIMIT = 1024 * 1024  # QAAS_MAX_BODY_BYTES's default


class Body:
    """A request body sent in chunks, counting how many of them the server pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.pulled = chunk, count, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == code, error
    assert "Traceback" not in response.text
    message: str = error["message"]
    return message


def padded(size: int) -> bytes:
    """A valid request of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    body = json.dumps({"query": "{ __typename }"}).encode()
    return body + b" " * (size - len(body))


@pytest.fixture
async def anonymous(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://qaas.test") as http:
        yield http


MALFORMED = {
    "invalid UTF-8": (b'{"query": "{ \xff\xfe }"}', "not valid UTF-8"),
    "bad JSON": (b'{"query": "{ __typename }"', "JSON"),
    "a JSON string": (b'"{ __typename }"', "JSON object"),
    "a JSON number": (b"5", "JSON object"),
    "a JSON list": (b'[{"query": "{ __typename }"}]', "JSON object"),
    "query not a string": (b'{"query": 5}', "`query`"),
    "variables not an object": (b'{"query": "{ __typename }", "variables": [1]}', "`variables`"),
    "no query": (b'{"variables": {}}', "No GraphQL query"),
}


@pytest.mark.parametrize("case", MALFORMED.keys())
async def test_a_malformed_request_is_400_in_json(api: GraphQLClient, case: str) -> None:
    body, said = MALFORMED[case]
    response = await api.http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert said in error_of(response, 400, "BAD_REQUEST")


async def test_a_body_over_the_limit_is_413_unread(api: GraphQLClient) -> None:
    at_limit = await api.http.post(
        "/graphql", content=padded(LIMIT), headers={"Content-Type": "application/json"}
    )
    assert at_limit.json() == {"data": {"__typename": "Query"}}
    body = Body(b" " * 1024, LIMIT // 1024 + 1)
    response = await api.http.post(
        "/graphql",
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(LIMIT + 1024)},
    )
    assert str(LIMIT) in error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert body.pulled == 0


async def test_a_chunked_body_is_cut_at_the_limit(api: GraphQLClient) -> None:
    body = Body(b" " * 1024, 50 * 1024)  # 50 MiB, no Content-Length
    response = await api.http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert str(LIMIT) in error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert body.pulled == LIMIT // 1024 + 1  # read up to the first byte over, no further


async def test_an_anonymous_request_is_401_before_its_body_is_read_or_parsed(
    anonymous: httpx.AsyncClient, api: GraphQLClient
) -> None:
    query = f'{{ network(name: "n-{uuid.uuid4().hex}") {{ id }} }}'  # parsed by nobody yet
    document = json.dumps({"query": query}).encode()
    parses: Any = _get_parse_cache(CACHE_SIZE)  # the functools LRU cache around parse()
    before = parses.cache_info()
    body = Body(document, 1)
    response = await anonymous.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    message = error_of(response, 401, "UNAUTHENTICATED")
    assert message == "authentication required: send `Authorization: Bearer <token>`"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert body.pulled == 0
    after = parses.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    # The same request with a token is parsed: the counter does see parses.
    assert (await api.data(query)) == {"network": None}
    assert parses.cache_info().misses == after.misses + 1


@pytest.mark.parametrize(
    ("authorization", "said"),
    [
        ("Bearer qaas_not-a-token", "invalid token"),
        ("Basic dXNlcjpwYXNz", "authentication required"),
    ],
)
async def test_a_bad_token_is_401_with_a_bearer_challenge(
    anonymous: httpx.AsyncClient, authorization: str, said: str
) -> None:
    response = await anonymous.post(
        "/graphql",
        json={"query": "{ viewer { role } }"},
        headers={"Authorization": authorization},
    )
    assert error_of(response, 401, "UNAUTHENTICATED").startswith(said)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_anonymous_get_has_graphiql_but_no_query(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/graphql", params={"query": "{ __typename }"})
    error_of(response, 401, "UNAUTHENTICATED")
    page = await anonymous.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    assert (await anonymous.get("/readyz")).status_code == 200
