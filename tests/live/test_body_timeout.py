"""A GraphQL request whose body does not arrive in time is 408, and its connection is closed:
a client that trickles its body, or stops halfway, holds neither a connection nor the control
loop's turns (a request counts as in flight while its body is read) for longer than
``QAAS_BODY_TIMEOUT_SECONDS``. Over a real socket to uvicorn, as ``qaas serve`` runs it."""

from __future__ import annotations

import asyncio
import json
import socket

from tests.live.conftest import IMPATIENT as TIMEOUT
from tests.live.conftest import LiveServer, raw_connection, read_until_closed

BODY = b'{"query": "{ viewer { role } }"}'


async def _send_head(server: LiveServer, length: int, first: bytes) -> socket.socket:
    sock = await raw_connection(server)
    await asyncio.get_running_loop().sock_sendall(
        sock,
        b"POST /graphql HTTP/1.1\r\nHost: qaas.test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (server.token.encode(), length, first),
    )
    return sock


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
        answer = await read_until_closed(sock)
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
            answer = await read_until_closed(sock)
            assert sent < 60  # cut off before the client stopped
        finally:
            sending.cancel()
    _refusal(answer)
