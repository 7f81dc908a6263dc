"""Errors: what the caller may see, and what is masked.

A ``ClientError`` is the caller's fault (a bad argument to a query) and its message is shown.
Syntax and validation errors are shown too. Anything else is a fault of ours: in the response it
becomes "Unexpected error." and the details go to the log only.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

log = logging.getLogger("qaas.graphql")


class ClientError(Exception):
    """The request is wrong in a way the caller can fix; the message says how."""


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, (ClientError, GraphQLError)):
        return False
    log.error("unexpected error in %s", error.path, exc_info=original)
    return True
