"""Answers to GraphQL queries over HTTP, kept in memory until what they show changes.

``ResponseCache.serve`` stands in front of the GraphQL view for an authenticated HTTP request.
A query (never a mutation, nor a streamed or multipart answer, nor one that selects a field not
read from the database: ``LIVE_FIELDS``, a node's log) is keyed by the caller's tenant and role,
the query document (parsed and printed again, so spacing and comments do not matter),
the operation name and the variables. The first request of a key runs the view; its answer is
kept as the bytes it sent, if it was a 200 JSON answer without errors. The next identical
requests are answered with those bytes, running no GraphQL and no SQL beyond the token check.

Consistency: the process counts every committed change per tenant (``app.store.changes``). An
answer is kept with the count taken BEFORE it was computed, and served only while nothing of
its tenant changed since: so a read that starts after a mutation's answer was received, or
after a status change was published, sees that change; another tenant's changes do not
matter. Concurrent identical requests share one computation, joining it only if nothing
changed since it started. Changes made by another process (``qaas`` CLI, another replica)
are not counted: an answer is served for at most ``QAAS_RESPONSE_CACHE_TTL`` seconds.
Bounded by ``QAAS_RESPONSE_CACHE_ENTRIES`` (0 turns the cache off) and
``QAAS_RESPONSE_CACHE_BYTES``, least recently used first out.

Example::

    cache = ResponseCache(entries=1000, max_bytes=64 << 20, ttl=5.0, schema=graphql_schema)
    await cache.serve(scope, receive, send, view)   # view: the ASGI app run on a miss
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    print_ast,
    visit,
)
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import cached_answer
from app.store.changes import changes
from schema.http import principal_of, replay

DOCUMENTS = 512  # query texts remembered with their normalized form
MAX_DOCUMENT_CHARS = 64 * 1024  # longer query texts are not cached
MAX_TOKENS = 5000
# Fields whose value does not come from the database (no commit tells when it changes): a
# query that selects one is never kept. A new field of that kind must be listed here.
LIVE_FIELDS = frozenset({("Node", "logs")})

Key = tuple[str, str, str, str | None, str]
RawHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: RawHeaders
    body: bytes


@dataclass
class Entry:
    ticket: int  # the change count taken before it was computed
    started: float  # monotonic time it was computed from
    answer: Answer
    size: int


@dataclass
class Flight:
    """A computation of one key that identical requests may wait for."""

    ticket: int
    started: float
    done: asyncio.Future[Answer | None]


class ResponseCache:
    def __init__(
        self,
        *,
        entries: int,
        max_bytes: int,
        ttl: float,
        schema: GraphQLSchema,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.max_bytes, self.ttl, self.clock = entries, max_bytes, ttl, clock
        self.schema = schema
        self.on = entries > 0 and max_bytes > 0
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._bytes = 0
        self._flights: dict[Key, Flight] = {}
        self._documents: OrderedDict[str, tuple[str, dict[str | None, OperationType]] | None]
        self._documents = OrderedDict()
        self.hits = self.misses = 0
        self.joined = 0  # requests that waited for an identical one's answer

    def __len__(self) -> int:
        return len(self._entries)

    async def serve(self, scope: Scope, receive: Receive, send: Send, view: ASGIApp) -> None:
        """Answer an HTTP request from the cache, or run ``view`` (keeping its answer if it
        may be kept)."""
        started = time.perf_counter()
        principal = principal_of(scope)
        if not self.on or principal is None:
            await view(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:
            return  # the client went away
        receive = replay(body, receive)
        key = self._key(scope, body, principal.tenant_id, principal.role.value)
        if key is None:
            await view(scope, receive, send)
            return
        tenant = principal.tenant_id
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None:
            if self._fresh(tenant, entry.ticket, entry.started, now):
                self._entries.move_to_end(key)
                self.hits += 1
                await _send(entry.answer, send)
                cached_answer(started)
                return
            self._drop(key)
        flight = self._flights.get(key)
        if flight is not None and self._fresh(tenant, flight.ticket, flight.started, now):
            self.joined += 1
            answer = await asyncio.shield(flight.done)
            if answer is not None:
                self.hits += 1
                await _send(answer, send)
                cached_answer(started)
                return
        self.misses += 1
        await self._compute(key, tenant, scope, receive, send, view)

    async def _compute(
        self, key: Key, tenant: str, scope: Scope, receive: Receive, send: Send, view: ASGIApp
    ) -> None:
        # The count is taken BEFORE the view reads: a change committed while it reads makes
        # the answer unfit to keep.
        flight = Flight(changes.ticket(), self.clock(), asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        captured = _Capture(send)
        answer: Answer | None = None
        try:
            await view(scope, receive, captured.send)
            answer = captured.answer()
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set_result(answer)
        if answer is not None and not changes.changed_since(tenant, flight.ticket):
            self._keep(key, Entry(flight.ticket, flight.started, answer, _size(key, answer)))

    def _fresh(self, tenant: str, ticket: int, started: float, now: float) -> bool:
        return now - started < self.ttl and not changes.changed_since(tenant, ticket)

    def _keep(self, key: Key, entry: Entry) -> None:
        if entry.size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Key) -> None:
        self._bytes -= self._entries.pop(key).size

    def _key(self, scope: Scope, body: bytes, tenant: str, role: str) -> Key | None:
        """The key of a request that may be cached: a query, asked for as plain JSON."""
        headers = Headers(scope=scope)
        if "multipart" in headers.get("accept", ""):
            return None
        request: Any
        try:
            if scope["method"] == "GET":
                params = QueryParams(scope["query_string"])
                variables = params.get("variables")
                request = {
                    "query": params.get("query"),
                    "operationName": params.get("operationName"),
                    "variables": json.loads(variables) if variables else None,
                }
            elif scope["method"] == "POST" and headers.get("content-type", "").startswith(
                "application/json"
            ):
                request = json.loads(body)
            else:
                return None
        except ValueError:  # not JSON: the view says why
            return None
        if not isinstance(request, dict):
            return None
        query, name = request.get("query"), request.get("operationName")
        if not isinstance(query, str) or not isinstance(name, str | None):
            return None
        document = self._document(query)
        if document is None:
            return None
        normalized, operations = document
        kind = (
            operations.get(name)
            if name or len(operations) != 1
            else next(iter(operations.values()))
        )
        if kind is not OperationType.QUERY:
            return None
        rest = {k: v for k, v in request.items() if k not in ("query", "operationName")}
        try:
            given = json.dumps(rest, sort_keys=True, separators=(",", ":"))
        except ValueError:
            return None
        return (tenant, role, normalized, name, given)

    def _document(self, query: str) -> tuple[str, dict[str | None, OperationType]] | None:
        """The query printed in a normal form and its operations' types; None if it does not
        parse (the view answers that) or selects a field in ``LIVE_FIELDS``."""
        if query in self._documents:
            self._documents.move_to_end(query)
            return self._documents[query]
        found: tuple[str, dict[str | None, OperationType]] | None = None
        if len(query) <= MAX_DOCUMENT_CHARS:
            try:
                ast = parse(query, no_location=True, max_tokens=MAX_TOKENS)
            except GraphQLError:
                ast = None
            if ast is not None and not _selects_live_fields(self.schema, ast):
                operations = {
                    d.name.value if d.name else None: d.operation
                    for d in ast.definitions
                    if isinstance(d, OperationDefinitionNode)
                }
                found = (print_ast(ast), operations)
        self._documents[query] = found
        if len(self._documents) > DOCUMENTS:
            self._documents.popitem(last=False)
        return found


class _LiveFieldFinder(Visitor):
    def __init__(self, types: TypeInfo) -> None:
        super().__init__()
        self.types, self.found = types, False

    def enter_field(self, node: FieldNode, *_: object) -> None:
        parent = self.types.get_parent_type()
        if parent is not None and (parent.name, node.name.value) in LIVE_FIELDS:
            self.found = True


def _selects_live_fields(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """Whether ``document`` selects a field of ``LIVE_FIELDS`` (in fragments too)."""
    types = TypeInfo(schema)
    finder = _LiveFieldFinder(types)
    visit(document, TypeInfoVisitor(types, finder))
    return finder.found


class _Capture:
    """Passes the view's answer on to the client, keeping a copy of it."""

    def __init__(self, send: Send) -> None:
        self.forward = send
        self.status = 0
        self.headers: RawHeaders = []
        self.chunks: list[bytes] = []
        self.complete = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        await self.forward(message)

    def answer(self) -> Answer | None:
        """The answer if it may be kept: complete, 200, JSON and without errors."""
        if not self.complete or self.status != 200:
            return None
        kind = dict(self.headers).get(b"content-type", b"")
        body = b"".join(self.chunks)
        if not kind.startswith(b"application/json") or b'"errors"' in body:
            return None
        return Answer(self.status, self.headers, body)


def _size(key: Key, answer: Answer) -> int:
    return len(answer.body) + sum(len(part or "") for part in key) + 200


async def _send(answer: Answer, send: Send) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
