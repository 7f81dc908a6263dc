"""kill -9 at a random moment of each burst of mutations, restart, and the cluster, the database
and the API still agree (issue 10, point 5): no orphans, no duplicates, no lost mutation, and
every node's status says what its pod does. One run per database, each on a database of its own.

The harness is ``tests/faults/chaos.py``; ``bench/chaos.py`` runs it for many more trials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.sandbox.handle import SandboxState
from tests.conftest import DATABASES, empty_database
from tests.faults.chaos import ChaosConfig, run_chaos

TRIALS = 3


@pytest.fixture(params=DATABASES)
async def chaos_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database for this run alone (the harness migrates it); dropped after."""
    async with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.mark.timeout(150)
async def test_kill9_during_bursts_leaves_cluster_database_and_api_in_agreement(
    sandbox: SandboxState, chaos_database: str, namespace: str, tmp_path: Path
) -> None:
    report = await run_chaos(
        ChaosConfig(
            kubeconfig=sandbox.kubeconfig, database_url=chaos_database, namespace=namespace,
            workdir=tmp_path, trials=TRIALS, seed=0, room=2, converge_within=30.0, progress=print,
        )
    )  # fmt: skip
    print(report.table())
    assert len(report.trials) == TRIALS, report.table()
    assert report.kills == TRIALS, "every trial must kill the server"
    assert report.ledger.count("accepted") > 0, "some mutations must have got through"
    # Seed 0 kills late, early, then midway; room for 2 node pods leaves the others unschedulable.
    assert report.seen["ready"] > 0, "the ready-pod rule was never exercised"
    assert report.seen["unschedulable"] > 0, "the unschedulable-pod rule was never exercised"
    found = {d.kind for d in report.disagreements}
    assert not {"orphan"} & found, report.table()
    assert not {k for k in found if k.startswith("duplicate")}, report.table()
    assert report.disagreements == [], report.table()
