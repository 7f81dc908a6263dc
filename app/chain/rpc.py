"""A small JSON-RPC 2.0 client over HTTP (aiohttp), with a timeout, that tells four outcomes
apart: a result, "method not found" (the node does not speak that API: unknown, not a failure),
another JSON-RPC error, and no answer at all (``Unreachable``: refused, timed out, not JSON-RPC).

Example::

    async with RpcClient(timeout=3) as rpc:
        reply = await rpc.call("http://10.244.1.7:20010", "raft_role")
        if reply.ok: role = reply.result
        elif reply.unknown: ...      # not a raft node (or not Quorum)
    replies = await rpc.batch(url, [("eth_blockNumber", []), ("net_peerCount", [])])

Adding a method is a string: ``await rpc.call(url, "raft_removePeer", [raft_id])``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from app.domain.text import one_line

METHOD_NOT_FOUND = -32601
# What servers say instead of (or besides) -32601: geth "the method raft_role does not
# exist/is not available", jayson "Method not found".
_NOT_FOUND_WORDS = ("method not found", "does not exist/is not available", "not supported")


class Unreachable(Exception):
    """No JSON-RPC answer: the connection failed or timed out, or the reply was not JSON-RPC."""


@dataclass(frozen=True)
class Reply:
    result: Any = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.error_message is None

    @property
    def unknown(self) -> bool:
        """The method does not exist on this node: the fact it would give is unknown."""
        if self.ok:
            return False
        said = (self.error_message or "").lower()
        return self.error_code == METHOD_NOT_FOUND or any(w in said for w in _NOT_FOUND_WORDS)

    @property
    def failed(self) -> bool:
        """A JSON-RPC error other than "method not found"."""
        return not self.ok and not self.unknown

    def describe(self) -> str:
        return f"JSON-RPC error {self.error_code}: {self.error_message}"


Call = tuple[str, Sequence[Any]]


class RpcClient:
    """One HTTP connection pool for every node; ``timeout`` bounds each request in seconds."""

    def __init__(self, timeout: float = 3.0, connections: int = 100) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self.requests = 0  # HTTP requests sent (a batch is one)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
            # No proxy from the environment: pod addresses are dialled directly, never relayed.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, trust_env=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, body: Any) -> Any:
        self.requests += 1
        try:
            async with self._http().post(url, json=body) as response:
                text = await response.text()
        except TimeoutError:
            raise Unreachable(f"no answer within {self.timeout.total:g}s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise Unreachable(one_line(error, 200)) from None
        try:
            return json.loads(text)
        except ValueError:
            raise Unreachable(f"HTTP {response.status}: not a JSON-RPC answer") from None

    async def call(self, url: str, method: str, params: Sequence[Any] = ()) -> Reply:
        answer = await self._post(url, self._request(method, params))
        return _reply(answer)

    async def batch(self, url: str, calls: Sequence[Call]) -> list[Reply]:
        """Several calls in one request (a JSON-RPC batch), replies in the order of ``calls``.
        A server that does not take batches gets the calls one by one."""
        requests = [self._request(method, params) for method, params in calls]
        answer = await self._post(url, requests)
        if not isinstance(answer, list):  # a single error: batches are not supported
            return list(await asyncio.gather(*(self.call(url, m, p) for m, p in calls)))
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        return [
            _reply(by_id[request["id"]]) if request["id"] in by_id else _MISSING
            for request in requests
        ]

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}


_MISSING = Reply(error_code=0, error_message="no reply for this call in the batch")


def _reply(answer: Any) -> Reply:
    if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
        raise Unreachable("not a JSON-RPC answer")
    error = answer.get("error")
    if error is None:
        return Reply(result=answer.get("result"))
    if isinstance(error, dict):
        code = error.get("code")
        return Reply(
            error_code=code if isinstance(code, int) else 0,
            error_message=str(error.get("message") or ""),
        )
    return Reply(error_code=0, error_message=str(error))
