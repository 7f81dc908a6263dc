"""Who may do what: every resolver names what it needs, and gets the caller's Principal.

A missing, bad, expired or revoked token is a top-level error with code UNAUTHENTICATED; a role
that may not do something is FORBIDDEN; too many mutations is RATE_LIMITED. Another tenant's
objects are not forbidden but invisible: queries simply do not find them.
"""

from __future__ import annotations

import enum
import math

from graphql import GraphQLError
from strawberry.types import Info

from app.domain.enums import Role
from app.services.tenancy import Principal
from schema.context import Context


class Need(enum.Enum):
    READ = "read"
    WRITE = "write"
    ADMIN_READ = "admin-read"  # e.g. listing tokens: ADMIN, but no rate limit
    ADMIN = "admin"


class AuthFailure(GraphQLError):
    """A top-level error whose message and code are meant for the caller."""

    def __init__(self, message: str, code: str, **extensions: object) -> None:
        super().__init__(message, extensions={"code": code, **extensions})


def caller(info: Info[Context, None], need: Need = Need.READ) -> Principal:
    context = info.context
    principal = context.principal
    if principal is None:
        raise AuthFailure(context.auth_problem or "authentication required", "UNAUTHENTICATED")
    if need is Need.WRITE and not principal.role.can_write:
        raise AuthFailure("this token is read-only (role VIEWER)", "FORBIDDEN")
    if need in (Need.ADMIN, Need.ADMIN_READ) and principal.role is not Role.ADMIN:
        raise AuthFailure("only an ADMIN token may manage tokens", "FORBIDDEN")
    if need in (Need.WRITE, Need.ADMIN):
        wait = context.deps.limiter.take(principal.token_id)
        if wait > 0:
            raise AuthFailure(
                f"too many changes with this token: retry in {math.ceil(wait)} s",
                "RATE_LIMITED",
                retryAfterSeconds=math.ceil(wait),
            )
    return principal
