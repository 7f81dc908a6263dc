"""The QNM stand-in (app/sandbox/standin) on its own, without the sandbox: two real nodes, each in
a network namespace of its own, as a coordinator and a dynamic peer would run in two pods.

The two namespaces are joined by one veth pair (10.250.77.1/24 and .2/24, both ends inside the
namespaces, no default route, nothing on the host), so the nodes can reach each other and
nothing else. The test reaches their JSON-RPC from inside the namespaces (``ip netns exec`` a
Python one-liner). Namespaces are named after this process (standin-<pid>-a/b); ones left by a
test process that died are removed first.

What is checked: a peer that joins while the coordinator is already sealing catches up and stays
within a few blocks of it (the EthereumJS client alone stops following, see main.mjs); both count
one peer; the enodes name the advertised IPs; a peer with a wrong COORDINATING_IP waits, says so
and opens no RPC; KEEP_FILES keeps the enode and the chain across a restart, and without it both
are new; SIGTERM ends a node with exit code 0 within a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.sandbox.processes import spawn, stop
from tests.helpers import eventually

STANDIN = Path(__file__).resolve().parents[2] / "app" / "sandbox" / "standin"
COORDINATOR_IP = "10.250.77.1"
PEER_IP = "10.250.77.2"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (node) is not installed"),
]

# Runs inside a namespace: one JSON-RPC call; prints the response, or {"down": <reason>}.
_CALL = """
import json, sys, urllib.request
try:
    request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),
                                     headers={"content-type": "application/json"})
    print(urllib.request.urlopen(request, timeout=3).read().decode())
except Exception as error:
    print(json.dumps({"down": repr(error)}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _remove_stale_namespaces() -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in re.findall(r"^(standin-(\d+)-[ab])\b", listed, re.MULTILINE):
        if not _alive(int(name[1])):
            subprocess.run(["ip", "netns", "del", name[0]], capture_output=True)


@dataclass
class Pair:
    """Two namespaces joined by a veth pair: ``a`` holds 10.250.77.1, ``b`` 10.250.77.2."""

    a: str
    b: str
    root: Path
    nodes: list[Node] = field(default_factory=list)

    def start(self, namespace: str, name: str, env: dict[str, str]) -> Node:
        """Run the stand-in in ``namespace`` (with a working directory of its own)."""
        cwd = self.root / name
        cwd.mkdir(exist_ok=True)
        log = self.root / f"{name}.log"
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_NAME": name, **env}
        command = ["ip", "netns", "exec", namespace, "env", "-C", str(cwd),
                   "node", "--max-semi-space-size=1", str(STANDIN / "main.mjs")]  # fmt: skip
        address = COORDINATOR_IP if namespace == self.a else PEER_IP
        node = Node(namespace, address, spawn(command, log, environment), log, time.monotonic())
        self.nodes.append(node)
        return node


@dataclass
class Node:
    namespace: str
    address: str  # the namespace's own address (IP, the advertised one, may be another)
    process: subprocess.Popen[bytes]
    log: Path
    started: float

    async def rpc(self, method: str, *params: Any) -> Any:
        """The call's result, or None while the node does not answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        call = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.namespace, sys.executable, "-c", _CALL,
            f"http://{self.address}:20010", body, stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await call.communicate()
        answer = json.loads(out)
        return None if "down" in answer else answer.get("result")

    async def height(self) -> int | None:
        result = await self.rpc("eth_blockNumber")
        return None if result is None else int(result, 16)

    async def answering(self) -> float | None:
        """Seconds from start to now, once the node answers JSON-RPC."""
        return time.monotonic() - self.started if await self.height() is not None else None

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM; the exit code. The stand-in exits by itself after 5 s (saying so): a clean
        stop is one that did not need that."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(10)
        assert "exiting anyway" not in self.output(), self.output()[-2000:]
        return code


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    installed = STANDIN / "node_modules" / "@ethereumjs" / "client"
    assert installed.is_dir(), "the stand-in's npm packages are missing: run ./dev setup"
    _remove_stale_namespaces()
    pid = os.getpid()
    made = Pair(f"standin-{pid}-a", f"standin-{pid}-b", tmp_path)
    try:
        _ip("netns", "add", made.a)
        _ip("netns", "add", made.b)
        # created inside namespace a, one end moved to b: nothing of it is ever on the host
        _ip("-n", made.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        _ip("-n", made.a, "link", "set", "eth1", "netns", made.b)
        _ip("-n", made.b, "link", "set", "eth1", "name", "eth0")
        for namespace, address in ((made.a, COORDINATOR_IP), (made.b, PEER_IP)):
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "link", "set", "eth0", "up")
        yield made
    finally:
        for node in made.nodes:
            stop(node.process, grace=5.0)
        for namespace in (made.a, made.b):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _coordinator(pair: Pair, name: str = "coordinator", **env: str) -> Node:
    return pair.start(pair.a, name, {"ROLE": "coordinator", "IP": COORDINATOR_IP,
                                     "CONSENSUS": "raft", **env})  # fmt: skip


def _peer(pair: Pair, coordinating_ip: str = COORDINATOR_IP, **env: str) -> Node:
    return pair.start(pair.b, "peer", {"ROLE": "dynamicPeer", "IP": PEER_IP,
                                       "COORDINATING_IP": coordinating_ip, **env})  # fmt: skip


async def _height_at_least(node: Node, least: int) -> int | None:
    height = await node.height()
    return height if height is not None and height >= least else None


async def _enode(node: Node) -> str:
    info = await node.rpc("admin_nodeInfo")
    assert info is not None, node.output()
    enode: str = info["enode"]
    return enode


async def test_a_late_peer_joins_and_keeps_up_with_the_coordinator(pair: Pair) -> None:
    coordinator = _coordinator(pair, STANDIN_CLIENT_LOG="debug")  # to count its sync attempts
    coordinator_answered = await eventually(coordinator.answering, within=30, every=0.2)
    # join late, as the earlier try's peer did: the first batch is not the whole story
    await eventually(lambda: _height_at_least(coordinator, 8), within=60, every=1)
    peer = _peer(pair)
    peer_answered = await eventually(peer.answering, within=30, every=0.2)

    async def caught_up() -> bool:
        ahead, behind = await coordinator.height(), await peer.height()
        return ahead is not None and behind is not None and ahead - behind <= 2

    await eventually(caught_up, within=30, every=1)
    samples: list[tuple[float, int, int]] = []
    began = time.monotonic()
    while time.monotonic() - began < 24:  # a window of blocks, not a wait for a condition
        ahead, behind = await coordinator.height(), await peer.height()
        assert ahead is not None, coordinator.output()
        assert behind is not None, peer.output()
        samples.append((time.monotonic(), ahead, behind))
        await asyncio.sleep(2)
    lags = [ahead - behind for _, ahead, behind in samples]
    assert max(lags) <= 3, (samples, peer.output())
    (t0, c0, p0), (t1, c1, p1) = samples[0], samples[-1]
    assert c1 >= c0 + 6, samples  # 2 s blocks: ~12 in 24 s
    assert p1 >= p0 + 6, samples

    assert await coordinator.rpc("net_peerCount") == "0x1"
    assert await peer.rpc("net_peerCount") == "0x1"
    assert (await _enode(coordinator)).endswith(f"@{COORDINATOR_IP}:20000")
    assert (await _enode(peer)).endswith(f"@{PEER_IP}:20000")
    # the peer's chain is the coordinator's chain, not one of its own
    block = f"0x{c0:x}"
    ours = await peer.rpc("eth_getBlockByNumber", block, False)
    theirs = await coordinator.rpc("eth_getBlockByNumber", block, False)
    assert ours["hash"] == theirs["hash"]

    # one sync attempt at a time: the client alone starts one more per block, each polling
    # for a peer every 5 s forever (its first poll logs "attempt #1")
    assert coordinator.output().count("Waiting for best peer (attempt #1)") <= 2

    minutes = (t1 - t0) / 60
    print(
        f"\nstand-in: first JSON-RPC answer after {coordinator_answered:.1f}s (coordinator), "
        f"{peer_answered:.1f}s (peer); RSS {coordinator.rss_mb():.0f} MB (coordinator), "
        f"{peer.rss_mb():.0f} MB (peer); blocks/min {(c1 - c0) / minutes:.1f} (coordinator), "
        f"{(p1 - p0) / minutes:.1f} (peer); largest lag {max(lags)} blocks"
    )
    assert coordinator.terminate() == 0
    assert peer.terminate() == 0


async def test_a_peer_with_a_wrong_coordinator_keeps_waiting(pair: Pair) -> None:
    peer = _peer(pair)  # nothing listens at 10.250.77.1: no coordinator in namespace a

    def waited() -> bool:
        return peer.output().count(f"waiting for the coordinator at http://{COORDINATOR_IP}") >= 3

    async def waiting() -> bool:
        return waited()

    await eventually(waiting, within=20, every=0.5)
    assert peer.process.poll() is None, peer.output()
    assert await peer.rpc("net_peerCount") is None  # no JSON-RPC before it joined
    assert "joined" not in peer.output()
    assert peer.terminate() == 0


async def test_keep_files_keeps_the_enode_and_the_chain(pair: Pair) -> None:
    # IP is advertised only, need not be local: in the sandbox it is the Service's ClusterIP
    advertised = "10.96.0.10"
    first = _coordinator(pair, KEEP_FILES="true", IP=advertised)
    height = await eventually(lambda: _height_at_least(first, 4), within=60, every=0.5)
    enode = await _enode(first)
    assert enode.endswith(f"@{advertised}:20000")
    assert first.terminate() == 0
    files = pair.root / "coordinator"
    assert (files / "Blockchain" / "genesis.json").is_file()
    assert (files / "Blockchain" / "nodekey").is_file()
    assert (files / "Constellation").is_dir()

    again = _coordinator(pair, KEEP_FILES="true", IP=advertised)
    await eventually(again.answering, within=30, every=0.2)
    assert await again.height() >= height  # type: ignore[operator]
    assert await _enode(again) == enode
    await eventually(lambda: _height_at_least(again, height + 2), within=30, every=0.5)
    assert again.terminate() == 0

    anew = _coordinator(pair, IP=advertised)  # KEEP_FILES unset: everything is made anew
    await eventually(anew.answering, within=30, every=0.2)
    assert await _enode(anew) != enode
    assert await anew.height() < height  # type: ignore[operator]
    assert anew.terminate() == 0
