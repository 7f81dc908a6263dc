"""Fixtures for driving the reconciler directly, pass by pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cluster.client import Cluster
from app.cluster.connect import ClusterTarget, connect
from app.config import Settings
from app.control.reconciler import Reconciler
from app.events.bus import InProcessBus


@pytest.fixture
async def cluster(kubeconfig: Path, namespace: str) -> AsyncIterator[Cluster]:
    connection = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    yield connection
    await connection.close()


@pytest.fixture
def reconciler(
    sessions: async_sessionmaker[AsyncSession], cluster: Cluster, settings: Settings
) -> Reconciler:
    return Reconciler(sessions, cluster, settings, InProcessBus())
