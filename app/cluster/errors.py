"""Our own error types for Kubernetes API failures, so no caller imports kubernetes_asyncio.

The reconciler decides by type: ``Conflict`` on create means "read it and converge",
``NotFound`` on delete means "done", ``Gone`` in a watch means "relist". The client retries
what may succeed a moment later (see ``retry.py``) before any of these reach a caller.
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A Kubernetes API call failed. ``status`` is the HTTP status, 0 if none came back;
    ``retry_after`` the seconds the server asked us to wait (``Retry-After``), if it did."""

    status = 0

    def __init__(
        self, message: str, status: int | None = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.retry_after = retry_after


class ClusterUnavailable(KubeError):
    """The API server could not be reached (connection refused, timeout, TLS failure).

    ``cause`` says how far the request got: ``connect`` (no connection: nothing was sent),
    ``timeout`` (no complete answer in time), ``connection`` (the connection broke), ``tls``.
    """

    def __init__(self, message: str, *, cause: str = "connection") -> None:
        super().__init__(message)
        self.cause = cause


class Forbidden(KubeError):
    status = 403


class NotFound(KubeError):
    status = 404


class Conflict(KubeError):
    """409: exists already, or the resourceVersion is stale."""

    status = 409


class Gone(KubeError):
    """410: the resourceVersion is too old to watch from; relist."""

    status = 410


class Invalid(KubeError):
    """422: the object was rejected by validation."""

    status = 422


class TooManyRequests(KubeError):
    status = 429


_BY_STATUS: dict[int, type[KubeError]] = {
    cls.status: cls for cls in (Forbidden, NotFound, Conflict, Gone, Invalid, TooManyRequests)
}


def from_status(
    status: int, body: Any, fallback: str = "", retry_after: float | None = None
) -> KubeError:
    """Build our error from an HTTP status and the API's Status object (or its JSON text);
    ``retry_after`` is the Retry-After header, else the Status's ``details.retryAfterSeconds``."""
    message = fallback
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            message = message or (body.decode() if isinstance(body, bytes) else body)[:500]
    if isinstance(body, dict):
        message = str(body.get("message") or message)
        details = body.get("details")
        if retry_after is None and isinstance(details, dict):
            seconds = details.get("retryAfterSeconds")
            retry_after = float(seconds) if isinstance(seconds, (int, float)) else None
    cls = _BY_STATUS.get(status, KubeError)
    return cls(message or f"HTTP {status}", status, retry_after=retry_after)
