"""Refusals the caller can fix: a stable code, the input field, and one sentence.

Services return these (never raise them); the GraphQL layer shows them as ``userErrors`` and the
CLI prints their message.

Example::

    >>> refusal = UserError(("input", "name"), '"Acme" must be lowercase', ErrorCode.INVALID_NAME)
    >>> refusal.code.value
    'INVALID_NAME'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.StrEnum):
    """Stable, machine-readable reasons a request was refused."""

    INVALID_ID = "INVALID_ID"
    INVALID_NAME = "INVALID_NAME"
    NAME_TAKEN = "NAME_TAKEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_IP = "INVALID_IP"
    CLUSTER_ADDRESS = "CLUSTER_ADDRESS"  # an address inside the cluster's own ranges
    BEING_DELETED = "BEING_DELETED"
    COORDINATOR = "COORDINATOR"
    HAS_PEERS = "HAS_PEERS"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INVALID_INPUT = "INVALID_INPUT"


@dataclass(frozen=True)
class UserError:
    field: tuple[str, ...]
    message: str
    code: ErrorCode
