"""A node read as a plain row (the lists' path: ``node_pages.first_node_pages``, by position)
makes the same ``NodeView`` as the node read as an ORM object: every field, chain facts
included; a network row makes the same ``NetworkView`` as the ORM network."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.domain.enums import Consensus, NetworkStatus, NodeRole, NodeStatus, Role
from app.services.tenancy import create_token
from app.store import node_pages, reads
from app.store.models import Network, Node, utcnow
from app.store.read_models import NetworkView, NodeView


async def test_a_row_makes_the_view_an_orm_node_makes(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = load_settings(database_url=database_url)
    tenant, _, _ = await create_token(sessions, "acme", Role.ADMIN, settings, "t")
    at = utcnow() - datetime.timedelta(hours=1)
    second = datetime.timedelta(seconds=1)
    network = Network(tenant_id=tenant.id, name="alpha", consensus=Consensus.RAFT)
    probed = Node(
        network=network, name="coordinator", role=NodeRole.COORDINATOR,
        status=NodeStatus.UNHEALTHY, status_reason="no peers", status_changed_at=at,
        service_ip="10.0.0.1", pod_name="alpha-coordinator-0", pod_phase="Running",
        pod_ready=True, pod_ip="10.244.0.9", restart_count=3, pod_reason="Error",
        pod_message="exit 1", pod_started_at=at + second, created_at=at + 2 * second,
        revision=7, chain_probed_at=at + 3 * second, chain_block_number=12,
        chain_peer_count=2, chain_syncing=False, chain_enode="enode://ab@10.0.0.1:21000",
        chain_client_version="Geth/v1.9", chain_raft_role="minter", chain_raft_id=1,
        chain_validators=json.dumps(["0x01", "0x02"]), chain_error="timed out",
    )  # fmt: skip
    unprobed = Node(
        network=network, name="peer-1", role=NodeRole.PEER, status=NodeStatus.PENDING,
        status_changed_at=at, created_at=at + 4 * second,
    )  # fmt: skip
    async with sessions.begin() as session:
        session.add_all([network, probed, unprobed])
    async with sessions() as session:
        pages = await node_pages.first_node_pages(session, tenant.id, [network.id], 10)
        rows = (await session.execute(select(Node, Network).join(Network))).all()
        from_orm = {node.id: NodeView.of(node, net) for node, net in rows}
    from_rows = pages[network.id].items
    assert [v.name for v in from_rows] == ["coordinator", "peer-1"]
    assert from_rows == [from_orm[v.id] for v in from_rows]
    assert from_rows[0].chain is not None
    assert from_rows[0].chain.validators == ("0x01", "0x02")
    assert from_rows[1].chain is None


async def test_a_network_row_makes_the_view_an_orm_network_makes(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = load_settings(database_url=database_url)
    tenant, _, _ = await create_token(sessions, "acme", Role.ADMIN, settings, "t")
    network = Network(
        tenant_id=tenant.id, name="beta", consensus=Consensus.IBFT, storage_size="2Gi",
        storage_class="fast",
    )  # fmt: skip
    coordinator = Node(
        network=network, name="coordinator", role=NodeRole.COORDINATOR,
        status=NodeStatus.RUNNING, service_ip="10.0.0.7", status_changed_at=utcnow(),
    )  # fmt: skip
    peer = Node(network=network, name="peer-1", role=NodeRole.PEER, status=NodeStatus.FAILED,
                status_changed_at=utcnow())  # fmt: skip
    async with sessions.begin() as session:
        session.add_all([network, coordinator, peer])
    async with sessions() as session:
        page = await reads.networks_page(session, tenant.id, 10, None)
        orm = await session.get_one(Network, network.id)
        statuses = [NodeStatus.RUNNING, NodeStatus.FAILED]
        expected = NetworkView.of(orm, statuses, "10.0.0.7", True)
    assert page.items == [expected]
    assert page.items[0].status is NetworkStatus.DEGRADED
    with pytest.raises(dataclasses.FrozenInstanceError):  # still a frozen snapshot
        page.items[0].name = "other"  # type: ignore[misc]
