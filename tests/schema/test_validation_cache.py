"""A document is validated once: the cache hits for every later request with the same text
(the guards' rules are the same objects for every operation, which the cache's key needs)."""

from __future__ import annotations

from typing import Any

import graphql
import pytest
import strawberry.schema.schema as strawberry_schema

from schema.build import MAX_ALIASES, MAX_DEPTH, build_schema
from tests.api.test_guards import aliases, nested


def count_validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = graphql.validate  # strawberry calls it as its module's own name

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    return calls


@pytest.mark.parametrize("introspection", [True, False])
async def test_the_same_document_is_validated_once(
    monkeypatch: pytest.MonkeyPatch, introspection: bool
) -> None:
    schema = build_schema(introspection=introspection)
    calls = count_validations(monkeypatch)
    query = "query CacheProbe { __typename }"
    for _ in range(3):
        result = await schema.execute(query)
        assert result.errors is None
    assert calls == [1]


async def test_the_guards_still_refuse_after_a_cached_validation() -> None:
    schema = build_schema()
    for document, word in ((nested(MAX_DEPTH + 1), "depth"), (aliases(MAX_ALIASES + 1), "alias")):
        for _ in range(2):
            result = await schema.execute(document)
            assert result.errors is not None
            assert word in result.errors[0].message.lower()
