"""A GraphQL request whose body does not arrive in time is 408, and its connection is closed:
a client that trickles its body, or stops halfway, holds neither a connection nor the control
loop's turns (a request counts as in flight while its body is read) for longer than
``QAAS_BODY_TIMEOUT_SECONDS``. Over a real socket to uvicorn, as ``qaas serve`` runs it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from app.config import Settings
from tests.conftest import CallerTenant
from tests.live.conftest import LiveServer

TIMEOUT = 0.5  # seconds: the server's QAAS_BODY_TIMEOUT_SECONDS here
BODY = b'{"query": "{ viewer { role } }"}'


@pytest.fixture
async def impatient(
    settings: Settings, sessions: object, tenant: CallerTenant
) -> AsyncIterator[LiveServer]:
    server = LiveServer(settings.model_copy(update={"body_timeout_seconds": TIMEOUT}), tenant.token)
    await server.start()
    yield server
    await server.stop()


async def _send_head(server: LiveServer, length: int, first: bytes) -> socket.socket:
    """A raw socket, not asyncio's streams: a stream raises a reset before the bytes it already
    holds, where the kernel hands over what arrived before the reset first."""
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await loop.sock_sendall(
        sock,
        b"POST /graphql HTTP/1.1\r\nHost: qaas.test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (server.token.encode(), length, first),
    )
    return sock


async def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection, bounded: a server that kept
    it open fails the test here rather than hanging it. A server that closes while the client is
    still sending resets the connection (uvicorn does not linger); what arrived before the reset
    is the answer all the same."""
    loop = asyncio.get_running_loop()
    answer = b""
    async with asyncio.timeout(10):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return answer
            if not chunk:
                return answer
            answer += chunk


def _refusal(answer: bytes) -> None:
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nconnection: close" in head.lower()
    (error,) = json.loads(content)["errors"]
    assert error["extensions"]["code"] == "REQUEST_TIMEOUT"
    assert "QAAS_BODY_TIMEOUT_SECONDS" in error["message"]


async def test_a_body_that_stops_halfway_is_408_and_the_connection_closes(
    impatient: LiveServer,
) -> None:
    foreground = impatient.app.state.foreground
    with await _send_head(impatient, len(BODY), BODY[:10]) as sock:
        answer = await _answer(sock)
    _refusal(answer)
    assert foreground.in_flight == 0


async def test_a_trickled_body_is_cut_off_while_it_still_trickles(impatient: LiveServer) -> None:
    """The time is the whole body's, not a pause's: a byte every third of it never lets a
    pause reach it, and the 408 still comes while the client is sending."""
    loop = asyncio.get_running_loop()
    sent = 0

    async def trickle(sock: socket.socket) -> None:
        nonlocal sent
        for _ in range(60):  # 20 times the server's timeout in all
            await asyncio.sleep(TIMEOUT / 3)  # the client's pace, not a wait for the server
            try:
                await loop.sock_sendall(sock, b" ")  # JSON may end in spaces
            except OSError:  # the server has closed the connection
                return
            sent += 1

    with await _send_head(impatient, 1000, BODY) as sock:
        sending = asyncio.create_task(trickle(sock))
        try:
            answer = await _answer(sock)
            assert sent < 60  # cut off before the client stopped
        finally:
            sending.cancel()
    _refusal(answer)
