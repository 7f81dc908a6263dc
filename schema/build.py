"""The schema and its guards, and the Strawberry ASGI view QaaS serves.

Guards are on for every transport, subscriptions included: query depth, aliases and tokens are
bounded, parsing and validation are cached with a maxsize, and each WebSocket connection may run
a bounded number of subscriptions. Over HTTP, ``schema.http.HttpGuard`` stands in front of the
view (body limit, authentication); the view answers a malformed request (not UTF-8, not JSON,
not a JSON object, ``query`` not a string, ``variables`` not an object) with 400 and a JSON
error of code BAD_REQUEST.
WebSockets are counted per client address and per token and refused over the caps (close code
4429); one whose token is revoked or expires is closed with 4403 and sends nothing more
(app/services/connections.py).

Example::

    schema = build_schema()
    print(schema.as_str())     # the SDL, pinned in schema/schema.graphql
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import orjson
import strawberry
from cross_web import HTTPException
from graphql import GraphQLError
from graphql.pyutils import gather_with_cancel
from graphql.type.definition import GraphQLResolveInfoHelpers
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.base_extension import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
)
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.unset import UNSET, UnsetType

from app.config import graphiql_enabled, introspection_enabled
from app.metrics import graphql_request
from app.services.api_deps import ApiDeps
from app.services.connections import FORBIDDEN, Connection, Refused
from app.services.tenancy import AuthError, Principal, bearer
from schema.context import Context
from schema.errors import is_client_error, should_mask, summary, unavailable
from schema.fanout import ReadQueue, SharedData, SharedEvent, group_key, render_shared, rendered
from schema.graphiql import graphiql_html
from schema.http import principal_of, request_error
from schema.metrics import OperationMetrics
from schema.mutations import Mutation
from schema.queries import Query
from schema.response_cache import ResponseCache
from schema.runner import LeanExtensionsRunner
from schema.subscriptions import Subscription
from schema.tokens import TokenMutation, TokenQuery
from schema.types import Network, Node, Operation

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5000
CACHE_SIZE = 512
GRAPHQL_PATH = "/graphql"
ASSETS_PATH = "/graphiql-assets"
HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}

log = logging.getLogger("qaas.graphql")


class PerEventExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Gives every subscription event its own subfield cache.

    graphql-core 3.3 copies the executor for each event, shallowly, so all events of a
    subscription share one memo of collected subfields. Its keys are the identities of lists
    rebuilt for each event: it never hits, keeps every list alive and grows by a few KiB per
    subscriber per event, for as long as the subscription lives (measured by bench/fanout.py:
    the heap grew by ~35k objects per change and full GCs reached a second).

    Executing an event: a ``SharedEvent`` (a published change) is executed once per group of
    identical subscriptions and the result shared (schema/fanout.py).
    """

    fanout_key: tuple[object, ...] | None = None  # this subscription's group (fanout.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core keeps two bound methods of the executor on the executor: a reference
        # cycle that made every query and mutation garbage for the cyclic collector (about
        # 80 objects each). While a full reconcile pass kept the collector off, a stream of
        # mutations left 300,000 to 440,000 of them, and the collection after the pass
        # stalled the loop 0.4 to 0.5 s (bench/mutations.py, timed with gc.callbacks).
        # The helpers reach the executor through a weak reference instead; it is alive while
        # anything it runs can call them.
        executor = weakref.ref(self)

        def track(values: Sequence[Any]) -> None:
            alive = executor()
            if alive is not None:
                alive.track_async_work(values)

        self.async_helpers = GraphQLResolveInfoHelpers(gather=_gather, track=track)

    def build_per_event_executor(self, payload: Any) -> Any:
        if isinstance(payload, SharedEvent):
            if self.fanout_key is None:
                self.fanout_key = group_key(self)
            found = rendered(payload, self.fanout_key, self.operation)
            if found is not None:
                return found
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        event = self.root_value
        if not isinstance(event, SharedEvent) or self.fanout_key is None:
            return super().execute_operation(serially)

        def execute(root: Any) -> Any:
            self.root_value = root
            return super(PerEventExecutionContext, self).execute_operation(serially)

        return render_shared(self, self.fanout_key, event, execute)


def _gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
    """What graphql-core's ``gather_async_work`` does, without its executor."""
    return gather_with_cancel(*values)


class QaasMaskErrors(MaskErrors):
    """MaskErrors without its isinstance check against a runtime Protocol on every result
    (a tenth of the server's time to deliver a change to a subscriber, measured with py-spy)."""

    def _process_result(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        # A busy database is said as UNAVAILABLE (schema.errors.unavailable), not masked.
        return super()._process_errors([unavailable(e) or e for e in errors])


class QaasSchema(strawberry.Schema):
    """Strawberry's schema, logging a caller's mistake (a syntax or validation error, a limit,
    a bad argument, no token) at INFO in one line with a hash and a prefix of the query, never
    the whole text nor a traceback. Unexpected errors are logged, with their traceback, where
    they are masked (``schema.errors.should_mask``)."""

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> LeanExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)  # schema/runner.py

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        query = execution_context.query if execution_context is not None else None
        for error in errors:
            if is_client_error(error):
                log.info("client error: %s", summary(error, query))


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    # Factories, not instances: Strawberry builds fresh extension objects per operation.
    # The depth and alias rules are made once, not per operation as QueryDepthLimiter and
    # MaxAliasesLimiter do: the validation cache is keyed by the rule classes, so it only hits
    # when they are the same objects (a new pair per operation made it miss every time and
    # kept ~5 KiB of classes alive per open subscription).
    rules: list[type[ASTValidationRule]] = [
        depth_rule(MAX_DEPTH, None, None),
        aliases_rule(MAX_ALIASES),
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(ParserCache, maxsize=CACHE_SIZE),
        partial(ValidationCache, maxsize=CACHE_SIZE),
        partial(AddValidationRules, rules),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(QaasMaskErrors, should_mask_error=should_mask),
        OperationMetrics,  # after MaskErrors: it sees the errors before they are masked
    ]
    return QaasSchema(
        query=merge_types("Query", (Query, TokenQuery)),
        mutation=merge_types("Mutation", (Mutation, TokenMutation)),
        subscription=Subscription,
        types=[Network, Node, Operation],
        extensions=extensions,
        execution_context_class=PerEventExecutionContext,
    )


CONNECTION_KEY = "qaas.connection"  # the WebSocket's Connection, in its ASGI scope


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with our refusals' codes and reasons, and a connection that sends
    nothing once it was ended (its token revoked or expired). A ``next`` message whose data was
    rendered for a group of subscribers is sent around its payload text, serialised once."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except Refused as refusal:
            await self.websocket.close(refusal.code, refusal.reason)
        # The init timeout was cancelled: the event loop finishes it; an idle socket need
        # not keep the done task (and its coroutine) for hours.
        self.connection_init_timeout_task = None

    async def send_message(self, message: Message) -> None:
        connection = self.context.connection
        if connection is not None and not self.context.deps.connections.deliverable(connection):
            return  # ended: its socket is being closed
        payload = message.get("payload")
        adapter = self.websocket
        if (
            message["type"] == "next"
            and isinstance(payload, dict)
            and len(payload) == 1
            and isinstance(payload.get("data"), SharedData)
            and isinstance(adapter, ASGIWebSocketAdapter)
        ):
            shared = payload["data"].payload_text(self.view.encode_json)
            text = f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{shared}}}'
            try:
                await adapter.ws.send_text(text)
            except WebSocketDisconnect as gone:
                raise WebSocketDisconnected from gone
            return
        await super().send_message(message)


class QaasGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, our offline GraphiQL and no legacy protocol."""

    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(self, deps: ApiDeps) -> None:
        settings = deps.settings
        schema = build_schema(introspection=introspection_enabled(settings))
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql_enabled(settings) else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            keep_alive=True,
            keep_alive_interval=15,
            max_subscriptions_per_connection=deps.settings.max_subscriptions,
        )
        self.deps = deps
        self._token_reads: ReadQueue[str, Principal] = ReadQueue()
        self.cache = ResponseCache(
            entries=settings.response_cache_entries,
            max_bytes=settings.response_cache_bytes,
            ttl=settings.response_cache_ttl,
            schema=schema._schema,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP: through the response cache (schema/response_cache.py), strawberry's own
        refusals answered as JSON. A WebSocket takes a place among its address's connections
        (or is closed with 4429) and gives it back when it ends, however it ends."""
        if scope["type"] == "http":
            await self.cache.serve(scope, receive, send, self.answer)
            return
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        websocket = WebSocket(scope, receive=receive, send=send)
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        try:
            connection = self.deps.connections.open(address, websocket.close)
        except Refused as refusal:
            await websocket.accept(subprotocol=await self.pick_websocket_subprotocol(websocket))
            await websocket.close(refusal.code, refusal.reason)
            return
        scope[CONNECTION_KEY] = connection
        try:
            await self.run(websocket)
        finally:
            self.deps.connections.release(connection)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request, run by Strawberry (what the response cache runs on a miss)."""
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as refused:  # strawberry's own refusals, as JSON
            graphql_request("unknown", "client_error")
            code = HTTP_CODES.get(refused.status_code, "BAD_REQUEST")
            response = request_error(refused.status_code, refused.reason, code)
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        """Answers and WebSocket messages as compact JSON, by orjson (several times faster than
        the standard library's encoder on a list of networks). Text, not bytes: a WebSocket
        message must go out as a text frame."""
        return orjson.dumps(data).decode()

    def parse_json(self, data: str | bytes) -> Any:
        """JSON of a query parameter (str), or the request body (bytes): that must be UTF-8
        and a JSON object (batches are off)."""
        if isinstance(data, str):
            return super().parse_json(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "the request body is not valid UTF-8") from None
        value = super().parse_json(text)
        if not isinstance(value, dict):
            raise HTTPException(
                400, 'the request body must be a JSON object: {"query": "...", "variables": {}}'
            )
        return value

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | Any
    ) -> Context:
        """An HTTP request's caller was authenticated by ``HttpGuard`` (once, before the body
        was read); a WebSocket authenticates in connection_init."""
        context = Context(deps=self.deps, request=request, response=response)
        principal = principal_of(request.scope)
        if principal is not None:
            context.authenticated(principal)
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Accept a WebSocket only with a valid token in the connection_init payload:
        ``{"Authorization": "Bearer <token>"}`` (or ``authorization``, or ``token``), and
        within the token's cap of connections. Refused: closed with 4403 or 4429 and why."""
        params = context.connection_params or {}
        context.connection_params = None  # read once: an idle socket keeps no copy of it
        if not isinstance(params, dict):
            raise Refused(FORBIDDEN, "connection_init payload must be an object")
        header = params.get("Authorization") or params.get("authorization")
        token = bearer(header) if isinstance(header, str) else params.get("token")
        await self._authenticate(context, token if isinstance(token, str) else None)
        if context.principal is None:
            raise Refused(FORBIDDEN, context.auth_problem or "forbidden")
        connection = context.request.scope.get(CONNECTION_KEY)
        if isinstance(connection, Connection):
            self.deps.connections.bind(connection, context.principal)
            context.connection = connection
        accepted: UnsetType = UNSET
        return accepted

    async def _authenticate(self, context: Context, token: str | None) -> None:
        """Connections that present the same token at the same time share one lookup, never
        one that began before they asked (``ReadQueue``): a burst of reconnecting dashboards
        costs a read per token, not per socket."""
        try:
            lookup = partial(self.deps.tokens.authenticate, token)
            principal = await self._token_reads.read(token or "", lookup)
            context.authenticated(principal)
        except AuthError as problem:
            context.auth_problem = str(problem)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_html(GRAPHQL_PATH, ASSETS_PATH))
