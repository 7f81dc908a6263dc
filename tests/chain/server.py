"""A small real JSON-RPC server for the chain's tests and benchmark: answers from a table of
recorded results, "method not found" for anything else, single calls and batches alike.

Recorded Quorum-only answers follow Quorum's API documentation (GoQuorum JSON-RPC reference,
https://docs.goquorum.consensys.io/reference/api-methods#raft-methods and
#istanbul-methods, and web3js-quorum's raftClusterDetails typedef,
https://consensys.github.io/web3js-quorum/latest/global.html): ``raft_role`` is "minter",
"verifier" or "learner"; ``raft_leader`` the leader's enode ID (hex, no 0x); ``raft_cluster``
a list of ``{raftId, nodeId, ip/hostname, p2pPort, raftPort, nodeActive, role}``;
``istanbul_getValidators`` a list of validator addresses.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

KEY_A = "ac6b1096" * 16  # an enode public key: 128 hex digits
KEY_B = "0ba6b9f6" * 16
ENODE_A = f"enode://{KEY_A}@10.244.0.5:20000?discport=0&raftport=40000"

COMMON: dict[str, Any] = {
    "eth_blockNumber": "0x1a",
    "net_peerCount": "0x1",
    "eth_syncing": False,
    "admin_nodeInfo": {"enode": ENODE_A, "id": "5f1ac0ffee", "name": "Geth/v1.8.18-stable"},
    "web3_clientVersion": "Geth/v1.8.18-stable-quorum-v2.2.3/linux-amd64/go1.10.1",
}
RAFT: dict[str, Any] = {
    **COMMON,
    "raft_role": "verifier",
    "raft_leader": KEY_B,
    "raft_cluster": [
        {"hostname": "10.244.0.4", "nodeActive": True, "nodeId": KEY_B, "p2pPort": 20000,
         "raftId": 1, "raftPort": 40000, "role": "minter"},
        {"hostname": "10.244.0.5", "nodeActive": True, "nodeId": KEY_A, "p2pPort": 20000,
         "raftId": 2, "raftPort": 40000, "role": "verifier"},
    ],
}  # fmt: skip
IBFT: dict[str, Any] = {
    **COMMON,
    "istanbul_getValidators": [
        "0x0895f16a0d1b4a5d8b3c8e0b2b0e3c6cf2c17b71",
        "0x8a1d4a6f4b1c2e3d5f6a7b8c9d0e1f2a3b4c5d6e",
    ],
}


class RecordedNode:
    """Serves ``answers`` at http://host:port/ (``delay`` seconds before each answer)."""

    def __init__(self, answers: dict[str, Any], delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.requests = 0
        self.calls: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        method = call.get("method", "")
        self.calls.append(method)
        base = {"jsonrpc": "2.0", "id": call.get("id")}
        if method in self.answers:
            return {**base, "result": self.answers[method]}
        message = f"the method {method} does not exist/is not available"
        return {**base, "error": {"code": -32601, "message": message}}

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        body = await request.json()
        if isinstance(body, list):
            return web.json_response([self._answer(c) for c in body])
        return web.json_response(self._answer(body))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
