"""Strawberry's extensions runner, without the work it repeats for every result of a
subscription when no extension asks for it.

For each result a subscription yields, for each subscriber, Strawberry builds a context manager
that looks through every extension for an ``on_stream_result`` hook and enters the hooks it
finds, and asks every extension for ``get_results``. In this schema only ``MaskErrors`` has
either (it masks a result's unexpected errors), yet in a py-spy profile of ``bench/fanout.py``
(2,000 subscribers) that work was about a fifth of the server's busy time.
``LeanExtensionsRunner`` looks once per operation for the extensions that have these hooks; it
skips the stream hooks for a result without errors when error masking is the only one (nothing
to mask: ``MaskErrors`` then masks the last result when the operation ends, as it does for a
query), and calls every hook as Strawberry does otherwise.

Example::

    class MySchema(strawberry.Schema):
        def create_extensions_runner(self, execution_context, extensions):
            return LeanExtensionsRunner(execution_context, extensions)
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import MaskErrors
from strawberry.extensions.base_extension import SchemaExtension
from strawberry.extensions.context import StreamResultContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext
from strawberry.types.execution import StreamExecutionResult
from strawberry.utils.await_maybe import await_maybe


class _Nothing:
    """What entering the hooks of no extension does: nothing."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


NOTHING = _Nothing()


def _has(extension: SchemaExtension, hook: str) -> bool:
    return getattr(type(extension), hook) is not getattr(SchemaExtension, hook)


def _maskable(result: StreamExecutionResult) -> bool:
    """Whether a result has errors, or parts that could (incremental delivery)."""
    return bool(
        getattr(result, "errors", None)
        or getattr(result, "incremental", None)
        or getattr(result, "completed", None)
    )


class LeanExtensionsRunner(SchemaExtensionsRunner):
    """A runner that calls only the extensions that have a stream-result or results hook."""

    def __init__(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension] | None = None
    ) -> None:
        super().__init__(execution_context, extensions)
        hooked = [e for e in self.extensions if _has(e, "on_stream_result")]
        self.masking_only = all(isinstance(e, MaskErrors) for e in hooked)
        self.reporting = [e for e in self.extensions if _has(e, "get_results")]

    def on_stream_result(self, result: StreamExecutionResult) -> StreamResultContextManager:
        if self.masking_only and not _maskable(result):
            return NOTHING  # type: ignore[return-value]  # used only as an async context manager
        return super().on_stream_result(result)

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for extension in self.reporting:
            data.update(await await_maybe(extension.get_results()))
        data.update(ctx.extensions_results)
        return data
