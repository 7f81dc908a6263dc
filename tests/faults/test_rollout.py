"""A rolling update of the PostgreSQL overlay never shows two leaders (issue 15).

What this is: two real ``qaas serve`` processes on one PostgreSQL database and the sandbox's real
API server, replaced one by one exactly as the Deployment controller replaces the pods of the
PostgreSQL overlay (2 replicas, maxSurge 1, maxUnavailable 0): a new replica with a changed
environment value starts, becomes ready, then an old one gets SIGTERM (and releases the Lease if
it holds it) while the next new one starts. The Lease's history (a watch on the Lease) and every
replica's ``qaas_leader`` (/metrics, all replicas asked at once, round after round) are recorded,
and a ``networkCreate`` is sent each second to a serving replica.

What it is not: a ``kubectl rollout`` of the Deployment. The QaaS pods cannot run in the sandbox
(a pod has no route to the host, where PostgreSQL listens on loopback only, and the
``kubernetes`` Service's ClusterIP is refused), so the harness (tests/faults/rollout.py) plays
the Deployment controller and the kubelet's SIGTERM; the ordering, the surge and the readiness
gate are the controller's, the processes, database and API server are real. A replica that
is shutting down no longer answers /metrics while it stops its loop and releases the Lease: that
moment of a handover is checked in the Lease's history (terms never overlap), not in the metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app.sandbox.handle import SandboxState
from tests.faults.rollout import RolloutConfig, check, run_rollout, summary


@pytest.mark.timeout(180)
async def test_a_rolling_update_never_shows_two_leaders(
    sandbox: SandboxState, shared_database: str, namespace: str, tmp_path: Path
) -> None:
    cfg = RolloutConfig(sandbox.kubeconfig, shared_database, namespace, tmp_path, progress=print)
    record = await run_rollout(cfg)
    print(summary(record))
    problems = check(record)
    assert not problems, Counter(problem.split(":")[0] for problem in problems)
    # The record is worth trusting: the metrics were polled throughout, the Lease changed hands
    # (old-1, the first leader, was stopped), both kinds of step happened, and work was sent.
    assert len(record.rounds) > 50
    assert [name for name, _ in record.steps] == ["old-2", "old-1"]
    holders = [spec.get("holderIdentity") for spec in record.lease]
    assert holders[0] == "old-1", holders
    assert holders[-1] in ("new-1", "new-2"), holders
    assert len(record.networks) >= 3
