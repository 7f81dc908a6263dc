"""Errors: what the caller may see, and what is masked.

A ``ClientError`` is the caller's fault (a bad argument to a query) and its message is shown,
with the code BAD_USER_INPUT.
Syntax and validation errors are shown too, and so is a ``ClusterFailure`` (code CLUSTER_ERROR).
A write that could not get the database's write lock in time (``DatabaseBusy``: another process
held SQLite's) is UNAVAILABLE with ``retryAfterSeconds``: nothing was written, the caller may
retry. Anything else is a fault of ours: in the response it becomes "Unexpected error." and the
details go to the log only, at ERROR with a traceback. A caller's mistake is logged at INFO in
one line (``summary``): its message cut short, a hash of the query and its first characters, so
that one client cannot fill the log with query texts.
"""

from __future__ import annotations

import hashlib
import logging
from typing import ClassVar

from graphql import GraphQLError

from app.store.engine import DatabaseBusy

log = logging.getLogger("qaas.graphql")


class ClientError(Exception):
    """The request is wrong in a way the caller can fix; the message says how. graphql-core
    takes an original error's ``extensions`` for the error it reports."""

    extensions: ClassVar[dict[str, object]] = {"code": "BAD_USER_INPUT"}


class ClusterFailure(GraphQLError):
    """Kubernetes refused or failed what a field needs (e.g. reading a pod's log): said to the
    caller with the code CLUSTER_ERROR, never masked as a fault of ours."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "CLUSTER_ERROR"})


MESSAGE_CHARS = 200
QUERY_PREFIX_CHARS = 60


def is_client_error(error: GraphQLError) -> bool:
    """The caller's mistake (syntax, validation, a limit, a bad argument, no token), not ours."""
    original = error.original_error
    return original is None or isinstance(original, (ClientError, GraphQLError))


def summary(error: GraphQLError, query: str | None) -> str:
    """One short line about a caller's mistake: never the whole query, never a traceback."""
    message = " ".join(error.message.split())
    if len(message) > MESSAGE_CHARS:
        message = message[:MESSAGE_CHARS] + "..."
    code = (error.extensions or {}).get("code")
    said = f"{message} [{code}]" if code else message
    if not query:
        return said
    digest = hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:12]
    prefix = " ".join(query.split())[:QUERY_PREFIX_CHARS]
    return f"{said} (query sha256:{digest}, {len(query)} chars, starts {prefix!r})"


def unavailable(error: GraphQLError) -> GraphQLError | None:
    """The error as the caller sees it if it is ``DatabaseBusy`` (UNAVAILABLE, with when to
    retry), else None."""
    busy = error.original_error
    if not isinstance(busy, DatabaseBusy):
        return None
    log.warning("answered UNAVAILABLE in %s: %s", error.path, busy)
    return GraphQLError(
        str(busy),
        nodes=error.nodes,
        path=error.path,
        extensions={"code": "UNAVAILABLE", "retryAfterSeconds": busy.retry_after},
    )


def should_mask(error: GraphQLError) -> bool:
    if is_client_error(error):
        return False
    log.error("unexpected error in %s", error.path, exc_info=error.original_error)
    return True
