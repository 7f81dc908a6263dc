"""The chain probe in the control loop: its targets come from the node rows, its readings go
back to them through the node writer (status derived in the same transaction, the change
published to subscribers), throttled.

Throttle: a reading is written at once when a fact that matters to the status or to the user's
picture changes (answering or not, the error, peers zero or not, syncing, raft role, ID and
membership, IBFT validators and stall, enode, client version); a reading that differs only in
block number or exact peer count is written at most every ``block_every`` seconds, so a block
a second does not flood subscribers. Under IBFT a node whose block number has not moved for
``stall_seconds`` is ``stalled`` (its status turns UNHEALTHY); under raft a flat height is
normal (raft mints only for transactions) and never stalls.

Example::

    recorder = ChainRecorder(sessions, writer, settings)
    probe = recorder.probe(RpcClient(settings.chain_probe_timeout))
    await probe.run()
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.chain.probe import ChainProbe, Reading, Target
from app.chain.rpc import RpcClient
from app.config import Settings
from app.control.node_writer import NodeWriter, WriteConflict
from app.control.progress import container_run
from app.domain.enums import Consensus
from app.domain.probe_scope import probe_networks
from app.store import chain
from app.store.models import Node
from app.store.read_models import NodeView


@dataclass
class _Written:
    key: tuple[object, ...]  # the facts that are written at once when they change
    detail: tuple[object, ...]  # block number and peer count: throttled
    at: float  # time.monotonic() of the write


@dataclass
class _Height:
    block: int | None
    since: float  # time.monotonic() when the block number last changed


class ChainRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: NodeWriter,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.writer = writer
        self.settings = settings
        self.block_every = settings.chain_probe_block_every
        self.stall_seconds = settings.chain_probe_stall_seconds
        self.written: dict[str, _Written] = {}
        self.heights: dict[str, _Height] = {}
        self.writes = 0  # readings written (each one a node revision, published)
        self.held = 0  # readings not written (nothing new, or only a throttled change)
        self.pending: set[asyncio.Future[NodeView | None]] = set()  # writes in flight

    def probe(self, rpc: RpcClient) -> ChainProbe:
        s = self.settings
        return ChainProbe(
            rpc, self.targets, self.record,
            networks=probe_networks(s.chain_probe_networks), interval=s.chain_probe_interval,
            concurrency=s.chain_probe_concurrency, backoff_max=s.chain_probe_backoff_max,
        )  # fmt: skip

    async def targets(self) -> Sequence[Target]:
        async with self.sessions() as session:
            rows = await chain.probe_targets(session)
        live = {row.node_id for row in rows}
        for gone in [n for n in self.written if n not in live]:
            self.written.pop(gone, None)
            self.heights.pop(gone, None)
        return [
            Target(
                row.node_id,
                row.pod_ip,
                row.consensus,
                run=container_run(row.pod_name, row.restart_count),
            )
            for row in rows
        ]

    def stalled(self, target: Target, reading: Reading, now: float) -> bool:
        height = self.heights.get(target.node_id)
        if height is None or height.block != reading.block_number:
            self.heights[target.node_id] = _Height(reading.block_number, now)
            return False
        return (
            target.consensus is Consensus.IBFT
            and reading.answering
            and now - height.since > self.stall_seconds
        )

    async def record(self, target: Target, reading: Reading) -> None:
        now = time.monotonic()
        stalled = self.stalled(target, reading, now)
        key = (
            target.run, reading.answering, reading.error, _peers(reading.peer_count),
            reading.syncing, reading.raft_role, reading.raft_id, reading.raft_member,
            reading.validators, stalled, reading.enode, reading.client_version,
        )  # fmt: skip
        detail = (reading.block_number, reading.peer_count)
        last = self.written.get(target.node_id)
        same = last is not None and last.key == key
        if same and last and (last.detail == detail or now - last.at < self.block_every):
            self.held += 1
            return

        async def apply(_: AsyncSession, node: Node) -> bool:
            if container_run(node.pod_name, node.restart_count) != target.run:
                return False  # the container changed while we probed: the next round sees it
            _store(node, target.run, reading, stalled)
            return True

        # Shielded: stopping the probe must not cut a database write in half (see the observer).
        write = asyncio.ensure_future(self.writer.write(target.node_id, apply, skip_absent=True))
        self.pending.add(write)
        write.add_done_callback(self.pending.discard)
        try:
            await asyncio.shield(write)
        except WriteConflict:
            return  # other writers kept the row busy: the next round writes it
        self.writes += 1
        self.written[target.node_id] = _Written(key, detail, now)


def _peers(count: int | None) -> bool | None:
    return None if count is None else count > 0


def _store(node: Node, run: str, reading: Reading, stalled: bool) -> None:
    node.chain_run = run
    node.chain_probed_at = reading.at
    node.chain_answering = reading.answering
    node.chain_error = reading.error
    node.chain_stalled = stalled
    if not reading.answering:
        return  # what it said last time stays visible (with the error and the time)
    node.chain_block_number = reading.block_number
    node.chain_peer_count = reading.peer_count
    node.chain_syncing = reading.syncing
    node.chain_enode = reading.enode
    node.chain_client_version = reading.client_version
    node.chain_raft_role = reading.raft_role
    node.chain_raft_id = reading.raft_id
    node.chain_raft_member = reading.raft_member
    node.chain_validators = None if reading.validators is None else json.dumps(reading.validators)
