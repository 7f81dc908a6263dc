"""A request's head (its request line and headers) must be complete within
``QAAS_HEADER_TIMEOUT_SECONDS`` of the connection's opening, or of the request's first byte on a
kept-alive connection: a client that connects and says nothing, trickles its headers or stops
halfway gets 408 and a closed connection instead of holding a socket forever. A WebSocket, whose
head was complete, lives on. Over real sockets to uvicorn, as ``qaas serve`` runs it."""

from __future__ import annotations

import asyncio
import json
import socket

import websockets

from tests.live.conftest import IMPATIENT as TIMEOUT
from tests.live.conftest import LiveServer, raw_connection, read_until_closed

HEAD = b"GET /healthz HTTP/1.1\r\nHost: qaas.test\r\n\r\n"


def _timed_out(answer: bytes) -> None:
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nconnection: close" in head.lower()
    assert b"headers did not all arrive in time" in content


async def _send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def test_a_connection_that_says_nothing_is_closed(impatient: LiveServer) -> None:
    with await raw_connection(impatient) as sock:
        _timed_out(await read_until_closed(sock))


async def test_a_head_that_stops_halfway_is_408(impatient: LiveServer) -> None:
    with await raw_connection(impatient) as sock:
        await _send(sock, HEAD[:20])
        _timed_out(await read_until_closed(sock))


async def test_a_trickled_head_is_cut_off_while_it_still_trickles(impatient: LiveServer) -> None:
    """The time is the whole head's: a byte every third of it never lets a pause reach it."""
    long_head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    sent = 0

    async def trickle(sock: socket.socket) -> None:
        nonlocal sent
        for byte in long_head:
            await asyncio.sleep(TIMEOUT / 3)  # the client's pace, not a wait for the server
            try:
                await _send(sock, bytes([byte]))
            except OSError:  # the server has closed the connection
                return
            sent += 1

    with await raw_connection(impatient) as sock:
        sending = asyncio.create_task(trickle(sock))
        try:
            answer = await read_until_closed(sock)
            assert sent < len(long_head)  # cut off before the head was done
        finally:
            sending.cancel()
    _timed_out(answer)


async def test_a_kept_alive_connections_next_head_has_its_deadline_too(
    impatient: LiveServer,
) -> None:
    """The first request is answered and the connection kept; the second one's head stops
    halfway (its bytes stop uvicorn's keep-alive timer, so only the head's deadline ends it)."""
    loop = asyncio.get_running_loop()
    with await raw_connection(impatient) as sock:
        await _send(sock, HEAD)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            assert chunk, first  # the server kept the connection open
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 ")
        await _send(sock, HEAD[:20])
        _timed_out(await read_until_closed(sock))


async def test_a_websocket_outlives_the_deadline(impatient: LiveServer) -> None:
    """Its head was complete at the handshake: the timer stopped there. A raw connection
    opened after it and timed out proves the deadline has passed for the WebSocket too."""
    async with websockets.connect(
        impatient.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as connection:
        init = {
            "type": "connection_init",
            "payload": {"Authorization": f"Bearer {impatient.token}"},
        }
        await connection.send(json.dumps(init))
        assert json.loads(await connection.recv())["type"] == "connection_ack"
        with await raw_connection(impatient) as sock:
            _timed_out(await read_until_closed(sock))
        await connection.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(connection.recv(), 10))["type"] == "pong"
