"""The API and the CLI judge names and addresses by the same rules (app/domain): whatever
`networkCreate` / `networkJoin` refuse as malformed, `qaas render` refuses too, and whatever one
accepts the other accepts."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli import main
from app.config import load_settings
from app.domain.enums import Consensus, Role
from app.domain.errors import ErrorCode
from app.services import networks
from app.services.tenancy import create_token
from app.store.unit import UnitOfWork

MALFORMED = {ErrorCode.INVALID_NAME, ErrorCode.INVALID_IP}

NETWORK_NAMES = [
    "acme", " acme ", "Acme", "1acme", "acme-", "ac_me", "", "   ", "a" * 52, "a" * 53, "a" * 61,
    "a" * 62, "acmé",
]  # fmt: skip
COORDINATOR_IPS = [
    "10.96.0.20", " 10.96.0.20 ", "192.168.1.7", "0.0.0.0", "127.0.0.1", "224.0.0.1",
    "239.255.255.250", "::1", "fe80::1", "quorum.example", "10.96.0.256", "",
]  # fmt: skip
NODE_NAMES = ["peer", "peer-1", "Peer", "-peer", "p" * 50, "p" * 61]


async def _api_refuses(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, name: str,
    ip: str | None = None, node: str = "peer",
) -> bool:  # fmt: skip
    async with UnitOfWork.begin(sessions) as work:
        if ip is None:
            result = await networks.create_network(work, tenant_id, name, Consensus.RAFT, 60)
        else:
            result = await networks.join_network(
                work, tenant_id, name, ip, Consensus.RAFT, 60, node_name=node
            )
        work.discard()  # judged, not kept: every case starts from the same empty tenant
    assert not [e for e in result.errors if e.code not in MALFORMED], result.errors
    return bool(result.errors)


def _cli_refuses(capsys: pytest.CaptureFixture[str], *args: str) -> bool:
    """``args`` as ``--option=value``, so that a value starting with "-" stays a value."""
    code = main(["render", *args])
    capsys.readouterr()
    assert code in (0, 2)
    return code == 2


@pytest.fixture
async def tenant_id(sessions: async_sessionmaker[AsyncSession], database_url: str) -> str:
    settings = load_settings(database_url=database_url, namespace="rules")
    tenant, _, _ = await create_token(sessions, "rules", Role.ADMIN, settings)
    return tenant.id


async def test_network_names(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    api = {name: await _api_refuses(sessions, tenant_id, name) for name in NETWORK_NAMES}
    cli = {name: _cli_refuses(capsys, f"--network={name}") for name in NETWORK_NAMES}
    assert api == cli
    assert api[" acme "] is False  # tidied
    assert api["a" * 52] is True  # "<name>-coordinator" must fit in 63
    assert set(api.values()) == {True, False}


async def test_joined_network_names_node_names_and_coordinator_addresses(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cases = (
        [("acme", ip, "peer") for ip in COORDINATOR_IPS]
        + [(name, "10.96.0.20", "peer") for name in NETWORK_NAMES]
        + [("acme", "10.96.0.20", node) for node in NODE_NAMES]
    )
    api = {
        case: await _api_refuses(sessions, tenant_id, case[0], case[1], case[2]) for case in cases
    }
    cli = {
        case: _cli_refuses(
            capsys, f"--network={case[0]}", f"--coordinator-ip={case[1]}", f"--peer={case[2]}"
        )
        for case in cases
    }
    assert api == cli
    # Multicast was accepted by `qaas render` and refused by the API before the rules had
    # one home.
    assert api[("acme", "224.0.0.1", "peer")] is True
    assert api[("acme", " 10.96.0.20 ", "peer")] is False
