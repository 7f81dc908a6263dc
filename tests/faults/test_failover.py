"""kill -9 the leader of two ``qaas serve`` processes on one PostgreSQL database: the other
takes the lease over within about a lease duration and carries out the work the dead one had
accepted, and a subscriber connected to the survivor before the kill is told the final state
(issue 15, point 5). Harness: tests/faults/failover.py; bench/failover.py repeats it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.sandbox.handle import SandboxState
from tests.faults.failover import FailoverConfig, run_failover


@pytest.mark.timeout(180)
async def test_the_survivor_takes_over_after_kill9_and_completes_pending_work(
    sandbox: SandboxState, shared_database: str, namespace: str, tmp_path: Path
) -> None:
    cfg = FailoverConfig(sandbox.kubeconfig, shared_database, namespace, tmp_path, kills=2,
                         progress=print)  # fmt: skip
    report = await run_failover(cfg)
    assert len(report.takeovers) == 2
    assert len(report.survivor_saw) == 2  # each survivor's subscriber saw the final state
    # Roles alternate: each kill's survivor is the next kill's victim.
    assert report.holders[1] == report.holders[2]
    for seconds in report.takeovers:
        # No sooner than the lease allows (less the retry period it was renewed in), and no
        # later than a lease duration plus two tries (a follower polls every retry period).
        assert cfg.lease_seconds - cfg.retry_period <= seconds
        assert seconds <= cfg.lease_seconds + 2.5 * cfg.retry_period
