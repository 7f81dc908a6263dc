"""Subscription events do not accumulate executor state (a graphql-core 3.3 leak, fixed here)."""

from __future__ import annotations

from graphql import parse

from schema.build import PerEventExecutionContext, build_schema

DOCUMENT = parse("subscription { nodeStatusChanged { id name pod { phase } } }")


def test_each_event_starts_with_an_empty_subfield_cache() -> None:
    schema = build_schema()._schema
    executor = PerEventExecutionContext.build(schema, DOCUMENT)
    assert isinstance(executor, PerEventExecutionContext)
    first = executor.build_per_event_executor({"event": 1})
    first._relevant_sub_fields[("marker", 1)] = ([], None)  # as executing an event would
    second = executor.build_per_event_executor({"event": 2})
    assert second._relevant_sub_fields == {}
    assert executor._relevant_sub_fields == {}
