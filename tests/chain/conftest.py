"""The chain's end-to-end tests: the service with its chain probe on, in a namespace whose pods
run as real processes (the QNM stand-in answers JSON-RPC at its pod IP)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client

from app.config import Settings, load_settings


@pytest.fixture
async def process_namespace(kube_api: client.ApiClient, namespace: str) -> str:
    await client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": {"sandbox.qaas.dev/runtime": "process"}}}
    )
    return namespace


@pytest.fixture
def settings(
    database_url: str, kubeconfig: Path, process_namespace: str, request: pytest.FixtureRequest
) -> Settings:
    marker = request.node.get_closest_marker("start_deadline")
    return load_settings(
        database_url=database_url,
        kubeconfig=str(kubeconfig),
        cluster="kubeconfig",
        namespace=process_namespace,
        resync_seconds=0.5,
        node_start_deadline=marker.args[0] if marker else 120,
        chain_probe="on",
        chain_probe_interval=0.5,
        chain_probe_block_every=1,
        chain_probe_backoff_max=2,
        # The sandbox's pod addresses (all slots): on its own bridge, or unreachable routes.
        chain_probe_networks="10.244.0.0/16",
        # A peer joins a sandbox address on purpose (a coordinator that is not there).
        join_allow_cluster_addresses=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "start_deadline(seconds): the node start deadline")
