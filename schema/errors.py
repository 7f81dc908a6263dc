"""Errors: what the caller may see, and what is masked.

A ``ClientError`` is the caller's fault (a bad argument to a query) and its message is shown.
Syntax and validation errors are shown too, and so is a ``ClusterFailure`` (code CLUSTER_ERROR).
Anything else is a fault of ours: in the response it becomes "Unexpected error." and the details
go to the log only.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

log = logging.getLogger("qaas.graphql")


class ClientError(Exception):
    """The request is wrong in a way the caller can fix; the message says how."""


class ClusterFailure(GraphQLError):
    """Kubernetes refused or failed what a field needs (e.g. reading a pod's log): said to the
    caller with the code CLUSTER_ERROR, never masked as a fault of ours."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "CLUSTER_ERROR"})


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, (ClientError, GraphQLError)):
        return False
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True
