"""GraphQL requests counted by operation type and outcome, and timed (app/metrics.py).

``OperationMetrics`` is a Strawberry extension at the operation level: it runs once per
operation (never per field), times parsing, validation and execution, and classifies the
errors of the result. A subscription is counted when it ends and is not timed. Requests that
never reach Strawberry are counted where they are answered: refusals of ``HttpGuard``
(schema/http.py), the view's 400s and the response cache's answers (schema/response_cache.py).

Outcomes, first match wins: ``server_error`` (an error of ours, masked for the caller),
``unauthenticated``, ``rate_limited``, ``forbidden`` (by the error's code), ``client_error``
(any other error: syntax, validation, a bad argument), else ``ok``. A mutation's userErrors
are data: ``ok``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from graphql import GraphQLError
from strawberry.extensions.base_extension import SchemaExtension

from app.metrics import graphql_request
from schema.errors import is_client_error

CODES = {"UNAUTHENTICATED": "unauthenticated", "RATE_LIMITED": "rate_limited",
         "FORBIDDEN": "forbidden"}  # fmt: skip


def outcome_of(errors: Sequence[GraphQLError] | None) -> str:
    if not errors:
        return "ok"
    found = "client_error"
    for error in errors:
        if not is_client_error(error):
            return "server_error"
        code = CODES.get((error.extensions or {}).get("code", ""))
        if code is not None and found == "client_error":
            found = code
    return found


class OperationMetrics(SchemaExtension):
    """List it after ``MaskErrors``: its end runs first and sees the errors unmasked."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        refused = False
        try:
            yield
        except Exception:
            # Strawberry's refusals before execution (no query, an unknown operation name, a
            # mutation over GET): the view answers 400.
            refused = True
            raise
        finally:  # a subscription also ends by cancellation
            errors = self.execution_context.pre_execution_errors
            outcome = "client_error" if refused else outcome_of(errors)
            graphql_request(self._type(), outcome, time.perf_counter() - started)

    def _type(self) -> str:
        try:
            return self.execution_context.operation_type.value
        except Exception:  # no document (a syntax error) or no such operation
            return "unknown"
