"""The start-up check of the cluster (one authenticated list) rides out a passing hiccup (429,
5xx) instead of stopping a workstation's `qaas serve`, and still says in one sentence when the
answer stays bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cluster.connect import (
    CHECK_ATTEMPTS,
    ClusterConfigError,
    ClusterTarget,
    check_access,
    connect,
)
from tests.faults.proxy import FaultProxy, Rule


async def test_a_passing_hiccup_at_start_up_is_tried_again(
    fault_proxy: FaultProxy, proxy_kubeconfig: Path, namespace: str
) -> None:
    cluster = await connect(ClusterTarget("kubeconfig", proxy_kubeconfig), namespace)
    try:
        fault_proxy.rules = [
            Rule("status", 1.0, status=429, times=1),
            Rule("status", 1.0, status=500, times=1),
            Rule("status", 1.0, status=503, times=1),
        ]
        await check_access(cluster)
        assert fault_proxy.injected == {"status:429": 1, "status:500": 1, "status:503": 1}

        fault_proxy.rules = [Rule("status", 1.0, status=500)]
        with pytest.raises(ClusterConfigError, match="answered 500 when QaaS listed Services"):
            await check_access(cluster)
        assert fault_proxy.injected["status:500"] == 1 + CHECK_ATTEMPTS
    finally:
        await cluster.close()
