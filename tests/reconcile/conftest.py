"""Fixtures for driving the reconciler directly, pass by pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.bus import InProcessBus
from app.k8s.client import Cluster
from app.k8s.connect import ClusterTarget, connect
from app.reconcile.reconciler import Reconciler


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
