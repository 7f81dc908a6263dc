"""A deadline for each request's head on `qaas serve`'s HTTP connections.

uvicorn bounds the idle time between two requests of a kept-alive connection, but nothing
else before a request's headers are complete: a connection that opens and sends nothing, or
sends its request line and headers a byte at a time, is held for as long as the client likes
(the "slowloris" attack: a few hundred such connections starve a server of sockets).
``HeadDeadlineProtocol`` is uvicorn's httptools HTTP protocol with one timer more: a request's
head must be complete within ``head_timeout`` seconds of the connection opening (its first
request) or of the request's first byte (the next ones; the wait before it is uvicorn's
keep-alive timeout). Past that the connection gets ``408 Request Timeout`` and is closed (just
closed, if a response to an earlier request is still under way). The timer stops when the head
is complete, so a slow body is the application's to bound (``QAAS_BODY_TIMEOUT_SECONDS``) and a
WebSocket lives on after its handshake.

Example::

    config = uvicorn.Config(app, http=with_head_deadline(10.0))
"""

from __future__ import annotations

import asyncio
from typing import cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MESSAGE = b"the request's headers did not all arrive in time\n"
TOO_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(MESSAGE), MESSAGE)
)


class HeadDeadlineProtocol(HttpToolsProtocol):
    head_timeout = 10.0  # seconds; ``with_head_deadline`` makes a class with another

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # the first request's head: from the connection's opening

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request's head: from its first byte
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no answer under way
            self.transport.write(TOO_SLOW)
        self.transport.close()


def with_head_deadline(seconds: float) -> type[HeadDeadlineProtocol]:
    """``HeadDeadlineProtocol`` with a deadline of ``seconds``, for ``uvicorn.Config(http=)``."""
    made = type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": seconds})
    return cast(type[HeadDeadlineProtocol], made)
