"""``LeanExtensionsRunner`` (schema/runner.py) keeps what extensions do to a subscription's
results: unexpected errors are masked, a result without errors arrives as it was, and an
extension with a stream-result hook of its own sees every result. It skips the masking hook for
a result without errors, which is what makes it cheaper (bench/fanout.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any, ClassVar

import strawberry
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types import ExecutionContext

from schema.build import build_schema
from schema.runner import LeanExtensionsRunner


class Counting(SchemaExtension):
    """Counts the results it sees, and reports a figure of its own."""

    seen: ClassVar[list[Any]] = []

    def on_stream_result(self, result: Any) -> Iterator[None]:
        Counting.seen.append(result.data)
        yield

    def get_results(self) -> dict[str, Any]:
        return {"counted": len(Counting.seen)}


class MaskCalls(MaskErrors):
    calls = 0

    def on_stream_result(self, result: Any) -> Iterator[None]:
        MaskCalls.calls += 1
        yield from super().on_stream_result(result)


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        raise RuntimeError("secret detail")


class LeanSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> LeanExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)


async def _results(extensions: list[Any]) -> list[Any]:
    schema = LeanSchema(query=Query, subscription=Subscription, extensions=extensions)
    stream = await schema.subscribe("subscription { ticks }")
    assert not isinstance(stream, strawberry.types.ExecutionResult)
    return [result async for result in stream]


async def test_errors_are_masked_and_results_without_errors_pass_unmasked() -> None:
    MaskCalls.calls = 0
    results = await _results([MaskCalls])
    assert [r.data for r in results[:2]] == [{"ticks": 1}, {"ticks": 2}]
    assert [r.errors for r in results[:2]] == [None, None]
    assert [e.message for e in results[2].errors] == ["Unexpected error."]
    assert MaskCalls.calls == 1  # only the result with an error went through the hook


async def test_an_extension_with_a_stream_hook_sees_every_result() -> None:
    Counting.seen = []
    results = await _results([MaskErrors, Counting])
    assert Counting.seen == [{"ticks": 1}, {"ticks": 2}, None]
    assert [e.message for e in results[2].errors] == ["Unexpected error."]
    # Results are asked for before each result's hook runs.
    assert [r.extensions for r in results] == [{"counted": n} for n in range(3)]


def test_the_service_schema_uses_the_lean_runner() -> None:
    schema = build_schema()
    runner = schema.create_extensions_runner(None, [])  # type: ignore[arg-type]
    assert isinstance(runner, LeanExtensionsRunner)
