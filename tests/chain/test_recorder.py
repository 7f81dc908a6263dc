"""The probe's readings reach the node's row through the node writer, throttled: a change that
matters at once, a new block number alone at most every QAAS_CHAIN_PROBE_BLOCK_EVERY."""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.chain.probe import Reading, Target
from app.config import Settings
from app.control.chain import ChainRecorder
from app.control.node_writer import NodeWriter
from app.domain.enums import Consensus, NodeStatus
from app.events.bus import Change, InProcessBus, NodeChange
from app.store.models import Node
from tests.conftest import CallerTenant
from tests.helpers import Writes


def reading(**changes: object) -> Reading:
    base: dict[str, object] = {
        "answering": True, "at": datetime.datetime.now(datetime.UTC), "block_number": 1,
        "peer_count": 1, "syncing": False, "enode": "enode://ab@10.244.0.5:20000",
    }  # fmt: skip
    return Reading(**{**base, **changes})  # type: ignore[arg-type]


class Recording(InProcessBus):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[NodeChange] = []

    def publish(self, change: Change) -> None:
        if isinstance(change, NodeChange):
            self.changes.append(change)
        super().publish(change)


async def test_status_changes_are_written_at_once_and_blocks_are_throttled(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, tenant: CallerTenant
) -> None:
    created = await Writes(sessions).create_network(tenant.id, "acme", Consensus.RAFT)
    assert created.node is not None
    node_id = created.node.id
    async with sessions() as session, session.begin():
        node = await session.get(Node, node_id)
        assert node is not None
        node.pod_phase, node.pod_ready, node.pod_name = "Running", True, "acme-coordinator-x"
    bus = Recording()
    writer = NodeWriter(sessions, bus, chain_required=True)
    recorder = ChainRecorder(sessions, writer, settings.model_copy(
        update={"chain_probe_block_every": 60.0}))  # fmt: skip
    target = Target(node_id, "10.244.0.5", Consensus.RAFT, run="acme-coordinator-x#0")

    await recorder.record(target, reading())
    assert len(bus.changes) == 1
    view = bus.changes[-1].snapshot
    assert view.status is NodeStatus.RUNNING
    assert view.chain is not None
    assert view.chain.block_number == 1

    for block in (2, 3, 4):  # a block a second: held
        await recorder.record(target, reading(block_number=block))
    assert len(bus.changes) == 1
    assert recorder.held == 3

    await recorder.record(target, reading(block_number=5, peer_count=0))  # peers gone: at once
    assert len(bus.changes) == 2
    assert bus.changes[-1].snapshot.chain is not None
    assert bus.changes[-1].snapshot.chain.block_number == 5

    await recorder.record(target, reading(answering=False, error="no answer within 3s"))
    assert len(bus.changes) == 3
    down = bus.changes[-1].snapshot
    assert down.status is NodeStatus.UNHEALTHY
    assert down.status_reason is not None
    assert "no answer within 3s" in down.status_reason

    await recorder.record(target, reading(block_number=6, peer_count=1))
    assert bus.changes[-1].snapshot.status is NodeStatus.RUNNING
    recorder.written[node_id].at -= 61  # the throttle's period has passed
    await recorder.record(target, reading(block_number=9, peer_count=1))
    assert len(bus.changes) == 5
    assert bus.changes[-1].snapshot.chain is not None
    assert bus.changes[-1].snapshot.chain.block_number == 9

    # A reading about an earlier container run is not written.
    await recorder.record(
        Target(node_id, "10.244.0.5", Consensus.RAFT, run="acme-coordinator-x#7"),
        reading(answering=False),
    )
    assert len(bus.changes) == 5
