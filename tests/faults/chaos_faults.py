"""The fault proxy as the kill -9 harness uses it: between ``qaas serve`` and the apiserver.

``default_rules()`` is the mix ``bench/chaos.py --faults`` runs: every kind the proxy knows,
at rates where a reconcile pass still succeeds most of the time.

Example::

    proxy = make_proxy(KubeAccess.of(kubeconfig), default_rules(), seed=1)
    await proxy.start()
    proxy.kubeconfig(workdir / "proxy.kubeconfig", token)
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.faults.chaos_server import KubeAccess
from tests.faults.proxy import FaultProxy, Rule


def default_rules() -> list[Rule]:
    return [
        Rule("latency", 0.10, delay=0.2),
        Rule("status", 0.05, watch=False, status=500),
        Rule("status", 0.03, watch=False, status=429, retry_after=1.0),
        Rule("status", 0.02, watch=False, status=503, retry_after=1.0),
        Rule("timeout", 0.01, watch=False, delay=2.0),
        # Watches are few (one per namespace, again after each relist): these fire often.
        Rule("gone", 0.3, watch=True),
        Rule("cut", 0.3, watch=True, after_events=3),
    ]


def make_proxy(access: KubeAccess, rules: Sequence[Rule], seed: int) -> FaultProxy:
    return FaultProxy(access.server, access.ca_file, list(rules), seed=seed)
