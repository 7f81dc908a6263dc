"""A node that is not running within its start deadline fails, with a reason, and so does the
operation that started it: nothing hangs silently."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.sandbox.kubelet import START_DELAY_ANNOTATION
from tests.helpers import GraphQLClient, eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The pod would start after a minute; the deadline is one second.
    return settings.model_copy(
        update={"node_start_deadline": 1.0, "node_pod_annotations": {START_DELAY_ANNOTATION: "60"}}
    )


async def test_a_node_past_its_deadline_fails_with_its_operation(api: GraphQLClient) -> None:
    created = await api.data(
        'mutation { networkCreate(input: {name: "slow"}) { operation { id } network { id } } }'
    )
    operation_id = created["networkCreate"]["operation"]["id"]

    async def failed() -> dict[str, Any] | None:
        data = await api.data(
            "query($id: ID!) { operation(id: $id) { state message node { status statusReason } } }",
            id=operation_id,
        )
        return data["operation"] if data["operation"]["state"] == "FAILED" else None

    operation = await eventually(failed, within=15)
    assert "start deadline" in operation["message"]
    assert operation["node"]["status"] == "FAILED"
    # The last thing seen names why: the pod being created, or (in the first second) its new
    # data claim not bound yet.
    reason = operation["node"]["statusReason"]
    assert "ContainerCreating" in reason or "WaitingForStorage" in reason, reason
