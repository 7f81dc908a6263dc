"""The GraphQL endpoint while QaaS starts: ``WhenReady`` answers for it until start-up is done.

Before that, a GraphQL request gets the error UNAVAILABLE with the reason (HTTP 503 and
Retry-After), a WebSocket is closed with 1013 (try again later), and GraphiQL's page is served
all along. ``app/server.py`` wraps the endpoint in it.
"""

from __future__ import annotations

import math
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket


class Readiness(Protocol):
    """What the gate asks of start-up (app/server.py: ``Startup``)."""

    @property
    def done(self) -> bool: ...

    retry_in: float

    def why_not_ready(self) -> str: ...


class WhenReady:
    """The GraphQL endpoint once start-up is done. Before that: the GraphQL error UNAVAILABLE
    with the reason (HTTP 503 and Retry-After), or a WebSocket closed with 1013 (try again
    later); GraphiQL's page is served all along."""

    def __init__(self, graphql: ASGIApp, startup: Readiness) -> None:
        self.graphql, self.startup = graphql, startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.startup.done or _wants_graphiql(scope):
            await self.graphql(scope, receive, send)
        elif scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            offered = scope.get("subprotocols") or [None]
            await websocket.accept(subprotocol=offered[0])
            await websocket.close(code=1013, reason="QaaS is not ready yet: see /readyz")
        else:
            wait = max(1, math.ceil(self.startup.retry_in))
            error = {
                "message": self.startup.why_not_ready(),
                "extensions": {"code": "UNAVAILABLE", "retryAfterSeconds": wait},
            }
            response = JSONResponse(
                {"data": None, "errors": [error]},
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
            await response(scope, receive, send)


def _wants_graphiql(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    request = Request(scope)
    return (
        "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
        and "authorization" not in request.headers
    )
