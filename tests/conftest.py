"""Shared fixtures: one sandbox cluster for the whole run, a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from app.sandbox.handle import Sandbox, SandboxState
from tests.helpers import eventually


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxState]:
    """A sandbox of our own for this test run, tied to pytest: it dies with the run."""
    handle = Sandbox(tmp_path_factory.mktemp("sandbox"))
    state = handle.up(progress=lambda line: print(line, flush=True), detach=False)
    yield state
    handle.down()


@pytest.fixture(scope="session")
def kubeconfig(sandbox: SandboxState) -> Path:
    return sandbox.kubeconfig


@pytest.fixture(scope="session")
async def kube_api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace({"metadata": {"name": name, "labels": {"qaas.dev/test": "true"}}})

    async def default_service_account() -> bool:
        # Pods are refused in a namespace until the controllers have created its default
        # ServiceAccount and that account's token (Kubernetes 1.20).
        accounts = await core.list_namespaced_service_account(name)
        return any(sa.metadata.name == "default" and sa.secrets for sa in accounts.items)

    await eventually(default_service_account)
    yield name
    await core.delete_namespace(name)
