"""What one networkChanged subscriber is told (schema/network_events.py ``_Told``): a network's
deletion heard from another replica without a state (that replica alone had it) is told with
the last state this subscriber was told, so ``network`` is never null on NETWORK_DELETED."""

from __future__ import annotations

import datetime

from app.domain.enums import Consensus, NetworkStatus
from app.events.bus import NetworkChange
from app.store.read_models import NetworkView
from schema.network_events import NetworkEventKind, _Told


def _view(status: NetworkStatus) -> NetworkView:
    return NetworkView(
        id="n1", tenant_id="t1", name="relay", consensus=Consensus.RAFT, status=status,
        external_coordinator_ip=None, created_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )  # fmt: skip


def test_a_deletion_without_a_state_is_told_with_the_state_the_subscriber_was_told() -> None:
    seen = _view(NetworkStatus.RUNNING)
    told = _Told({"n1": seen})
    assert told.network_event(NetworkChange("n1", "t1", None, deleted=True)) == (
        NetworkEventKind.NETWORK_DELETED, seen)  # fmt: skip
    assert "n1" not in told.networks
    # Told once: a second deletion of it (or of one it never heard of) tells nothing.
    assert told.network_event(NetworkChange("n1", "t1", None, deleted=True)) is None


def test_a_deletion_with_a_state_is_told_with_that_state() -> None:
    told = _Told({"n1": _view(NetworkStatus.RUNNING)})
    last = _view(NetworkStatus.DELETING)
    assert told.network_event(NetworkChange("n1", "t1", last, deleted=True)) == (
        NetworkEventKind.NETWORK_DELETED, last)  # fmt: skip
