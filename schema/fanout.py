"""A node change rendered once for all subscribers whose selection is identical.

How Strawberry runs a subscription over graphql-transport-ws: each ``subscribe`` message starts
a task running ``schema.stream``: parsing and validation (both cached), then graphql-core's
``subscribe`` calls our resolver (schema/subscriptions.py) for a source stream and, for every
value it yields, copies the operation's executor (``build_per_event_executor``) and executes the
whole selection with that value as the root; the handler then serialises the message
``{"id", "type": "next", "payload"}`` and sends it. With N subscribers one change was executed
N times (field resolvers, loaders, their SQL) and serialised N times.

The design keeps that pipeline as it is (guards, error masking, completion, each subscriber's
own mailbox that coalesces a slow subscriber, the token checks on delivery) and shares its two
costly steps:

- Execution. The bus hands every subscriber the same ``NodeChange`` object; the resolver yields
  it as a ``SharedEvent``. The per-event executor (``schema.build.PerEventExecutionContext``)
  looks the result up in that change's ``renders`` memo under the group key: tenant, role, the
  parsed operation (the parser cache gives equal texts one document) and the coerced variables.
  The first subscriber of a group executes; the others take its result (or await it while it
  runs). The memo lives as long as the change. Snapshots are never shared: each subscriber's
  first messages are read fresh for it.
- Serialisation. A shared result's data is a ``SharedData`` dict that keeps the JSON text of
  ``{"data": ...}``, made once; ``schema.build.TransportWSHandler`` builds each ``next`` message
  around that text (only the subscription id differs).

Results with errors are not shared with the serialisation shortcut: they go through the usual
per-subscriber formatting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from graphql import ExecutionResult

from app.events.bus import NodeChange

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class SharedEvent:
    """One published change, as a subscriber's generator yields it; ``root`` builds the root
    value (the ``Node``) when this subscriber's group has not rendered the change yet."""

    change: NodeChange
    root: Callable[[], Any]


class SharedData(dict[str, Any]):
    """The ``data`` of a shared result, with the ``payload`` JSON text made once."""

    __slots__ = ("_text",)

    def payload_text(self, encode: Callable[[object], str | bytes]) -> str:
        text: str | None = getattr(self, "_text", None)
        if text is None:
            encoded = encode({"data": self})
            text = encoded.decode() if isinstance(encoded, bytes) else encoded
            self._text = text
        return text


def group_key(executor: Any) -> tuple[object, ...]:
    """Who would see the same rendering: tenant, role, operation and variables (made once per
    subscription: the per-event executors are copies of its executor)."""
    principal = getattr(executor.context_value, "principal", None)
    tenant = principal.tenant_id if principal is not None else None
    role = principal.role if principal is not None else None
    variables = json.dumps(executor.variable_values.coerced, sort_keys=True, default=str)
    return (tenant, role, id(executor.operation), variables)


@dataclass(eq=False)
class _Render:
    operation: object  # held so that its id in the key is not reused while the entry lives
    result: asyncio.Task[ExecutionResult] | ExecutionResult


class Rendered:
    """Stands in for a per-event executor when the group already rendered the change: no
    copy of the executor is made, its ``execute_operation`` hands out the shared result."""

    __slots__ = ("result",)

    def __init__(self, result: asyncio.Task[ExecutionResult] | ExecutionResult) -> None:
        self.result = result

    def execute_operation(
        self, serially: bool | None = None
    ) -> asyncio.Task[ExecutionResult] | ExecutionResult:
        return self.result


def rendered(event: SharedEvent, key: tuple[object, ...], operation: object) -> Rendered | None:
    """The group's rendering of ``event``, if one was made or is under way."""
    found: _Render | None = event.change.renders.get(key)
    if found is None or found.operation is not operation:
        return None
    return Rendered(found.result)


def _shared(result: ExecutionResult) -> ExecutionResult:
    if result.errors or not isinstance(result.data, dict):
        return result
    return ExecutionResult(SharedData(result.data), None, result.extensions)


def render_shared(
    executor: Any, key: tuple[object, ...], event: SharedEvent, execute: Callable[[Any], Any]
) -> ExecutionResult | asyncio.Task[ExecutionResult]:
    """Execute ``event`` for ``executor``'s group (``key``) with ``execute(root)`` (a result
    or an awaitable) and keep the result in the change's memo for the rest of the group. A
    failed execution is not kept: the group's next subscriber executes again."""
    found = rendered(event, key, executor.operation)
    if found is not None:
        return found.result
    renders: dict[tuple[object, ...], _Render] = event.change.renders
    outcome = execute(event.root())
    if not executor.is_awaitable(outcome):
        result = _shared(outcome)
        renders[key] = _Render(executor.operation, result)
        return result

    async def finish() -> ExecutionResult:
        try:
            result = _shared(await outcome)
        except BaseException:
            renders.pop(key, None)
            raise
        renders[key] = _Render(executor.operation, result)
        return result

    task = asyncio.ensure_future(finish())
    renders[key] = _Render(executor.operation, task)
    return task


class ReadQueue(Generic[K, T]):
    """Reads with the same key share one read, never one that began before they asked.

    ``read(key, fetch)`` joins the read of ``key`` that has not started yet, or queues one
    (started at the next turn of the loop, or once the read of ``key`` in flight ends). So at
    most one read per key runs at a time and every caller gets data read after its call: a
    subscriber that subscribed to the bus before asking misses no change. The read runs in its
    own task: a caller that goes away does not cancel it for the others.
    """

    def __init__(self) -> None:
        self._queued: dict[K, asyncio.Task[T]] = {}
        self._running: dict[K, asyncio.Task[T]] = {}

    def read(self, key: K, fetch: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        task = self._queued.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(key, fetch, self._running.get(key)))
            task.add_done_callback(_retrieve)
            self._queued[key] = task
        return asyncio.shield(task)

    async def _run(
        self, key: K, fetch: Callable[[], Awaitable[T]], previous: asyncio.Task[T] | None
    ) -> T:
        if previous is not None:
            await asyncio.wait([previous])
        else:
            await asyncio.sleep(0)  # the callers of this same turn join
        this = asyncio.current_task()
        if self._queued.get(key) is this:
            del self._queued[key]  # from now on, callers queue the next read
        self._running[key] = cast("asyncio.Task[T]", this)
        try:
            return await fetch()
        finally:
            if self._running.get(key) is this:
                del self._running[key]


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # each caller gets it through its shield; none left is no warning
