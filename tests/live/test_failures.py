"""Failing pods arrive at subscribers as FAILED with the kubelet's reason; the operation fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gql import Client, GraphQLRequest

from app.config import Settings
from app.sandbox.kubelet import BEHAVIOR_ANNOTATION
from tests.helpers import eventually
from tests.live.conftest import LiveServer
from tests.live.test_subscriptions_gql import CREATE, SUBSCRIBE, post, transport


@pytest.fixture(params=["image-pull-error", "crash-loop"])
def behavior(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, behavior: str) -> Settings:
    return settings.model_copy(update={"node_pod_annotations": {BEHAVIOR_ANNOTATION: behavior}})


EXPECTED_REASON = {"image-pull-error": "ImagePullBackOff", "crash-loop": "CrashLoopBackOff"}
# The operation fails at the first failing reason the kubelet reports.
OPERATION_REASONS = {
    "image-pull-error": ("ErrImagePull", "ImagePullBackOff"),
    "crash-loop": ("CrashLoopBackOff",),
}


async def test_failure_reaches_the_subscriber_and_fails_the_operation(
    live: LiveServer, behavior: str
) -> None:
    created = await post(live, CREATE, name="doomed")
    network_id = created["networkCreate"]["network"]["id"]
    operation_id = created["networkCreate"]["operation"]["id"]
    reason = EXPECTED_REASON[behavior]

    async with Client(transport=transport(live)) as session:

        async def until_failed() -> dict[str, Any]:
            request = GraphQLRequest(SUBSCRIBE, variable_values={"networkId": network_id})
            async for result in session.subscribe(request):
                node = result["nodeStatusChanged"]
                # ErrImagePull is already a failure; ImagePullBackOff follows it.
                if node["status"] == "FAILED" and node["statusReason"].startswith(reason):
                    return node  # type: ignore[no-any-return]
            raise AssertionError("the subscription ended before FAILED")

        node = await asyncio.wait_for(until_failed(), timeout=30)
    assert node["pod"]["reason"] == reason

    async def operation_failed() -> dict[str, Any] | None:
        query = "query($id: ID!) { operation(id: $id) { state message } }"
        operation = (await post(live, query, id=operation_id))["operation"]
        return operation if operation["state"] == "FAILED" else None

    operation = await eventually(operation_failed, within=10)
    assert operation["message"].startswith(OPERATION_REASONS[behavior])
