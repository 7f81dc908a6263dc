"""The fault proxy in front of the session's sandbox, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from app.sandbox.handle import SandboxState
from tests.conftest import empty_database
from tests.faults.proxy import FaultProxy


def sandbox_credentials(kubeconfig: Path) -> tuple[str, Path, str]:
    """The sandbox's server URL, CA file and admin token, read from its kubeconfig."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    return str(cluster["server"]), Path(cluster["certificate-authority"]), str(token)


@pytest.fixture
def sandbox_token(sandbox: SandboxState) -> str:
    return sandbox_credentials(sandbox.kubeconfig)[2]


@pytest.fixture
async def fault_proxy(sandbox: SandboxState) -> AsyncIterator[FaultProxy]:
    """A started FaultProxy with no rules (add some to ``fault_proxy.rules``); stopped after."""
    server, ca_file, _ = sandbox_credentials(sandbox.kubeconfig)
    proxy = FaultProxy(server, ca_file, seed=1)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
def proxy_kubeconfig(fault_proxy: FaultProxy, sandbox_token: str, tmp_path: Path) -> Path:
    """A kubeconfig that reaches the sandbox through the proxy."""
    return fault_proxy.kubeconfig(tmp_path / "kubeconfig-proxy", sandbox_token)


@pytest.fixture
async def shared_database(tmp_path: Path) -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own, for several `qaas serve` processes to share."""
    async with empty_database("postgresql", tmp_path) as url:
        yield url
