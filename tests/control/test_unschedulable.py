"""A pod no node can take is not "starting": its node is PENDING with the scheduler's message,
and the start deadline fails it with that reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from app.config import Settings
from tests.helpers import GraphQLClient, eventually

NODE_STATUS = """
query($name: String!) { network(name: $name) { nodes { edges { node {
  status statusReason statusHistory { status reason } } } } } }
"""


@pytest.fixture
async def cordoned(kube_api: client.ApiClient) -> AsyncIterator[None]:
    """Every sandbox node marked unschedulable for the test (as `kubectl cordon` does)."""
    core = client.CoreV1Api(kube_api)
    names = [node.metadata.name for node in (await core.list_node()).items]
    for name in names:
        await core.patch_node(name, {"spec": {"unschedulable": True}})
    try:
        yield
    finally:
        for name in names:
            await core.patch_node(name, {"spec": {"unschedulable": False}})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"node_start_deadline": 8.0})


async def _coordinator(api: GraphQLClient) -> dict[str, Any]:
    data = await api.data(NODE_STATUS, name="stuck")
    node: dict[str, Any] = data["network"]["nodes"]["edges"][0]["node"]
    return node


async def test_an_unschedulable_node_is_pending_with_the_schedulers_reason_then_fails(
    cordoned: None, api: GraphQLClient
) -> None:
    await api.data('mutation { networkCreate(input: {name: "stuck"}) { network { id } } }')

    async def pending_with_reason() -> dict[str, Any] | None:
        node = await _coordinator(api)
        return node if (node["statusReason"] or "").startswith("Unschedulable: ") else None

    node = await eventually(pending_with_reason, within=15)
    assert node["status"] == "PENDING"
    assert "unschedulable" in node["statusReason"]  # the scheduler's own words

    async def failed() -> dict[str, Any] | None:
        node = await _coordinator(api)
        return node if node["status"] == "FAILED" else None

    node = await eventually(failed, within=20)
    assert node["statusReason"].startswith("Unschedulable: ")
    assert "start deadline" in node["statusReason"]
    assert [c["status"] for c in node["statusHistory"]][-1] == "FAILED"
