"""The guard in front of the GraphQL HTTP endpoint: bounded and authenticated before any work.

``HttpGuard`` is plain ASGI and, for an HTTP request that could run GraphQL, in this order:

1. refuses a ``Content-Length`` over ``QAAS_MAX_BODY_BYTES`` with 413, reading nothing;
2. looks the bearer token up once (``ApiDeps.tokens``: remembered for a moment); none, or one
   that is invalid, revoked or expired, is 401 with ``WWW-Authenticate: Bearer`` (the body is
   neither read nor decoded, nothing is parsed);
3. reads the body, counting: past the limit (a chunked body has no ``Content-Length``) it stops
   and answers 413; a body still incomplete ``QAAS_BODY_TIMEOUT_SECONDS`` after the headers
   (a client that trickles it, or stops) is 408 with ``Connection: close``, so that a slow
   client holds neither its connection nor the control loop's turns (below) for longer;
4. hands the request on with the body it read and the caller's ``Principal`` in
   ``scope["state"]`` (``principal_of`` reads it back), so the view never looks the token up.

From its first step to its answer such a request counts as in flight (``Foreground.serving``):
the control loop's units of work wait for a moment with none (app/events/foreground.py). One
that accepts a streamed answer (``multipart/``, ``text/event-stream``) does not count: it may
stay open for hours.

A GET without a ``query`` parameter runs no GraphQL (GraphiQL's page, or a 400 from the view)
and passes unauthenticated; WebSockets pass untouched (they authenticate in connection_init).
Every refusal is a JSON body ``{"errors": [{"message": ..., "extensions": {"code": ...}}]}``,
as ``request_error`` builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.events.foreground import Foreground
from app.metrics import graphql_request
from app.services.api_deps import ApiDeps
from app.services.tenancy import AuthError, Principal, bearer

PRINCIPAL = "qaas.principal"


def request_error(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A request refused before any GraphQL ran: GraphQL's error shape, no ``data``."""
    error = {"message": message, "extensions": {"code": code}}
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


def principal_of(scope: Scope) -> Principal | None:
    """The caller the guard authenticated for this request (None: not a GraphQL request)."""
    found = scope.get("state", {}).get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


def too_large(limit: int) -> JSONResponse:
    return request_error(
        413,
        f"the request body is larger than {limit} bytes (QAAS_MAX_BODY_BYTES)",
        "PAYLOAD_TOO_LARGE",
    )


def too_slow(seconds: float) -> JSONResponse:
    return request_error(
        408,
        f"the request body did not arrive within {seconds:g} s (QAAS_BODY_TIMEOUT_SECONDS)",
        "REQUEST_TIMEOUT",
        {"Connection": "close"},  # the rest of the body may still come: not a next request
    )


class HttpGuard:
    def __init__(self, app: ASGIApp, deps: ApiDeps, foreground: Foreground | None = None) -> None:
        self.app, self.deps, self.limit = app, deps, deps.settings.max_body_bytes
        self.body_timeout = deps.settings.body_timeout_seconds
        self.foreground = foreground or Foreground()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _runs_no_graphql(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _may_stream(headers):  # open as long as the client likes: not an answer to wait for
            await self._guarded(headers, scope, receive, send)
            return
        with self.foreground.serving():
            await self._guarded(headers, scope, receive, send)

    async def _guarded(self, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _declared_size_problem(headers.get("content-length"), self.limit)
        if refusal is not None:
            graphql_request("unknown", "client_error")
            await refusal(scope, receive, send)
            return
        token = bearer(headers.get("authorization"))
        try:
            principal = await self.deps.tokens.authenticate(token)
        except AuthError as problem:
            graphql_request("unknown", "unauthenticated")
            challenge = "Bearer" if token is None else 'Bearer error="invalid_token"'
            refused = request_error(
                401, str(problem), "UNAUTHENTICATED", {"WWW-Authenticate": challenge}
            )
            await refused(scope, receive, send)
            return
        body = await _read_within(receive, self.limit, self.body_timeout)
        if body is None:  # the client went away while sending
            return
        if isinstance(body, JSONResponse):
            graphql_request("unknown", "client_error")
            await body(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.app(scope, replay(body, receive), send)


def _runs_no_graphql(scope: Scope) -> bool:
    return scope["method"] == "GET" and "query" not in QueryParams(scope["query_string"])


def _may_stream(headers: Headers) -> bool:
    """A request that accepts a streamed answer (a subscription or an incremental delivery over
    HTTP), which may stay open for hours."""
    accept = headers.get("accept", "")
    return "multipart/" in accept or "text/event-stream" in accept


def _declared_size_problem(declared: str | None, limit: int) -> JSONResponse | None:
    if declared is None:
        return None
    if not declared.isdigit():
        return request_error(400, "the Content-Length header is not a number", "BAD_REQUEST")
    return too_large(limit) if int(declared) > limit else None


async def _read_within(receive: Receive, limit: int, seconds: float) -> bytes | JSONResponse | None:
    """``_read``, or a 408 if the whole body has not arrived within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await _read(receive, limit)
    except TimeoutError:
        return too_slow(seconds)


async def _read(receive: Receive, limit: int) -> bytes | JSONResponse | None:
    """The whole body, a 413 once it passes ``limit`` bytes, or None on a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """The request's body once more, as one message; then whatever the client sends next
    (a disconnect, which a streaming response waits for)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
        return message

    return again
