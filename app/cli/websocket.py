"""How `qaas serve` runs uvicorn, and its WebSocket protocol trimmed for many idle sockets.

A live dashboard keeps a WebSocket open for hours and receives a ~200-byte update now and then,
so a server holding thousands of them is bound by what each idle socket holds (issue 14,
bench/memory.py). ``LeanWebSocketProtocol`` is uvicorn's sans-I/O WebSocket protocol (on the
`websockets` library's state machine) with three things an idle socket does not need:

- the handshake's request and response objects (their header maps), kept for the socket's
  life (by uvicorn, and by the `websockets` parser's suspended generator) although nothing
  reads them once the handshake is answered (the ASGI scope keeps its own copy of the
  request headers);
- an ``asyncio.Queue`` for the ASGI ``receive`` messages: three deques and an Event, where a
  list and a future made only while the application waits do;
- an ``asyncio.Event`` for "the transport may be written to", replaced by a flag and a future
  made only while a sender waits for a full write buffer to drain.

``uvicorn_config`` is the one place that configures uvicorn (the tests' live server uses it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from app.cli.http_head import with_head_deadline


class _Inbox:
    """The ASGI ``receive`` messages of one socket: what uvicorn uses of an asyncio.Queue."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None  # only while someone waits

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
                    break

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
        return self._items.pop(0)


class _Writable:
    """Whether the transport may be written to: what uvicorn uses of an asyncio.Event."""

    __slots__ = ("_drained", "_open")

    def __init__(self) -> None:
        self._open = True
        self._drained: asyncio.Future[None] | None = None  # only while a sender waits

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        drained = self._drained
        if drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> None:
        while not self._open:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol holding less per idle socket (the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        del self.request  # read by nothing after this; the scope has the headers
        # The `websockets` parser's suspended generator still refers to the request for the
        # socket's life: its header map goes, the scope has its own copy.
        event.headers.clear()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and hasattr(self, "response"):
            del self.response  # the handshake's answer, sent


def uvicorn_config(app: Any, host: str, port: int, head_timeout: float) -> uvicorn.Config:
    """`qaas serve`'s uvicorn: no log configuration of its own (ours is set), a deadline for
    each request's head (``QAAS_HEADER_TIMEOUT_SECONDS``, app/cli/http_head.py), the lean
    WebSocket protocol, and no permessage-deflate (node updates are ~200 bytes: compression
    saves little and costs ~40 KiB of zlib state per socket)."""
    return uvicorn.Config(
        app, host=host, port=port, log_config=None, lifespan="on",
        http=with_head_deadline(head_timeout),
        ws=LeanWebSocketProtocol, ws_per_message_deflate=False,
    )  # fmt: skip
