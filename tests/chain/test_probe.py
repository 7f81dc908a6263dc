"""The JSON-RPC client and the chain probe against a small real JSON-RPC server serving
recorded Quorum answers (their shapes and sources: tests/chain/server.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from app.chain.probe import ChainProbe, Reading, Target
from app.chain.rpc import RpcClient, Unreachable
from app.domain.enums import Consensus
from app.domain.probe_scope import probe_networks
from tests.chain.server import ENODE_A, IBFT, RAFT, RecordedNode

LOOPBACK = probe_networks("127.0.0.0/8")


@pytest.fixture
async def rpc() -> AsyncIterator[RpcClient]:
    async with RpcClient(timeout=1.0) as client:
        yield client


async def serve(answers: dict[str, object], delay: float = 0.0) -> RecordedNode:
    node = RecordedNode(answers, delay)
    await node.start()
    return node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_client_tells_a_result_an_unknown_method_and_an_error_apart(
    rpc: RpcClient,
) -> None:
    node = await serve({**RAFT})
    try:
        url = f"http://127.0.0.1:{node.port}"
        role = await rpc.call(url, "raft_role")
        assert role.ok
        assert role.result == "verifier"
        missing = await rpc.call(url, "istanbul_getValidators")
        assert missing.unknown
        assert not missing.failed
        replies = await rpc.batch(url, [("eth_blockNumber", []), ("raft_removePeer", [2])])
        assert replies[0].result == "0x1a"
        assert replies[1].unknown
        assert node.requests == 3  # a batch is one request
    finally:
        await node.stop()


async def test_a_json_rpc_error_other_than_not_found_is_a_failure() -> None:
    from app.chain.rpc import Reply

    no_leader = Reply(error_code=-32000, error_message="no leader is currently elected")
    assert no_leader.failed
    assert not no_leader.unknown
    assert Reply(error_code=-32000, error_message="Method not found").unknown


async def test_no_server_and_a_slow_server_are_unreachable(rpc: RpcClient) -> None:
    with pytest.raises(Unreachable, match=r"connect|refused"):
        await rpc.call(f"http://127.0.0.1:{free_port()}", "eth_blockNumber")
    slow = await serve(RAFT, delay=3.0)
    try:
        with pytest.raises(Unreachable, match="no answer within 1s"):
            await rpc.call(f"http://127.0.0.1:{slow.port}", "eth_blockNumber")
    finally:
        await slow.stop()


async def test_a_raft_node_reads_as_its_role_leader_and_raft_id(rpc: RpcClient) -> None:
    node = await serve(RAFT)
    try:
        probe = ChainProbe(rpc, _none, _drop, networks=LOOPBACK)
        reading = await probe.read(Target("n1", "127.0.0.1", Consensus.RAFT, port=node.port))
        assert reading.answering
        assert reading.error is None
        assert (reading.block_number, reading.peer_count, reading.syncing) == (26, 1, False)
        assert reading.enode == ENODE_A
        assert reading.client_version is not None
        assert "quorum" in reading.client_version
        assert (reading.raft_role, reading.raft_id, reading.raft_member) == ("verifier", 2, True)
        assert reading.raft_leader == RAFT["raft_leader"]
        assert reading.validators is None
        assert "istanbul_getValidators" not in node.calls
    finally:
        await node.stop()


async def test_a_raft_node_missing_from_the_cluster_is_no_member(rpc: RpcClient) -> None:
    cluster = [e for e in RAFT["raft_cluster"] if e["raftId"] != 2]
    node = await serve({**RAFT, "raft_cluster": cluster})
    try:
        probe = ChainProbe(rpc, _none, _drop, networks=LOOPBACK)
        reading = await probe.read(Target("n1", "127.0.0.1", Consensus.RAFT, port=node.port))
        assert (reading.raft_id, reading.raft_member) == (None, False)
    finally:
        await node.stop()


async def test_an_ibft_node_reads_its_validators(rpc: RpcClient) -> None:
    node = await serve(IBFT)
    try:
        probe = ChainProbe(rpc, _none, _drop, networks=LOOPBACK)
        reading = await probe.read(Target("n1", "127.0.0.1", Consensus.IBFT, port=node.port))
        assert reading.validators == tuple(IBFT["istanbul_getValidators"])
        assert reading.raft_role is None
        assert reading.raft_member is None
    finally:
        await node.stop()


async def test_a_client_without_quorum_methods_leaves_them_unknown(rpc: RpcClient) -> None:
    plain = {k: v for k, v in RAFT.items() if not k.startswith("raft_")}
    node = await serve(plain)
    try:
        probe = ChainProbe(rpc, _none, _drop, networks=LOOPBACK)
        reading = await probe.read(Target("n1", "127.0.0.1", Consensus.RAFT, port=node.port))
        assert reading.answering
        assert (reading.raft_role, reading.raft_id, reading.raft_member) == (None, None, None)
    finally:
        await node.stop()


async def test_the_probe_never_dials_an_address_outside_its_ranges(rpc: RpcClient) -> None:
    node = await serve(RAFT)
    try:
        # The default ranges are private pod space: loopback (and anything public) is refused.
        probe = ChainProbe(rpc, _none, _drop, networks=probe_networks("10.0.0.0/8"))
        for address in ("127.0.0.1", "8.8.8.8", "169.254.169.254"):
            reading = await probe.read(Target("n1", address, Consensus.RAFT, port=node.port))
            assert not reading.answering
            assert reading.error is not None
            assert "outside the probe's allowed ranges" in reading.error
        assert node.requests == 0
        assert rpc.requests == 0
        assert probe.stats.refused == 3
    finally:
        await node.stop()


async def test_a_silent_node_is_probed_less_and_less_often(rpc: RpcClient) -> None:
    port = free_port()
    silent = Target("n1", "127.0.0.1", Consensus.RAFT, run="pod#0", port=port)
    targets = [silent]
    seen: list[Reading] = []

    async def sink(_: Target, reading: Reading) -> None:
        seen.append(reading)

    async def listed() -> list[Target]:
        return targets

    probe = ChainProbe(rpc, listed, sink, networks=LOOPBACK, interval=0.05, backoff_max=0.4)
    await probe.round()
    assert len(seen) == 1
    assert not seen[0].answering
    assert probe.backoff["n1"].delay == pytest.approx(0.05)
    await probe.round()  # at once: the node is in back-off, not probed
    assert len(seen) == 1
    assert probe.stats.skipped == 1
    delays = []
    for _ in range(5):
        probe.backoff["n1"].due = 0  # as if its back-off were over
        await probe.round()
        delays.append(probe.backoff["n1"].delay)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.4])  # doubling, up to the cap
    # A new container run resets the back-off: probed at once.
    targets[0] = Target("n1", "127.0.0.1", Consensus.RAFT, run="pod#1", port=port)
    before = len(seen)
    await probe.round()
    assert len(seen) == before + 1
    probe.backoff["n1"].due = float("inf")
    node = await serve(RAFT)
    try:
        targets[0] = Target("n1", "127.0.0.1", Consensus.RAFT, run="pod#1", port=node.port)
        probe.backoff["n1"].due = 0
        await probe.round()
        assert seen[-1].answering
        assert "n1" not in probe.backoff
    finally:
        await node.stop()


async def test_the_concurrency_budget_bounds_requests_in_flight(rpc: RpcClient) -> None:
    node = await serve(RAFT, delay=0.1)
    in_flight, most = 0, 0
    original = node.handle

    async def counting(request):  # type: ignore[no-untyped-def]
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await original(request)
        finally:
            in_flight -= 1

    node.handle = counting  # type: ignore[method-assign]
    await node.stop()
    await node.start()
    try:
        targets = [Target(f"n{i}", "127.0.0.1", Consensus.RAFT, port=node.port) for i in range(12)]

        async def listed() -> list[Target]:
            return targets

        probe = ChainProbe(rpc, listed, _drop, networks=LOOPBACK, concurrency=3)
        readings = await probe.round()
        assert len(readings) == 12
        assert all(r.answering for _, r in readings)
        assert most == 3
    finally:
        await node.stop()


async def _none() -> list[Target]:
    return []


async def _drop(_: Target, __: Reading) -> None:
    return None
