"""The shared informer survives an expired watch (410) and cut streams without losing a change
and without handing any change over twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.cluster.client import PODS, Cluster, Resource
from app.cluster.connect import ClusterTarget, connect
from app.cluster.errors import ClusterUnavailable, Gone
from app.cluster.informer import Informer
from app.sandbox.handle import SandboxState
from tests.helpers import eventually

SELECTOR = "qaas.dev/informer-test=yes"


class FaultyWatch:
    """In front of the real apiserver: the first watch asks for an expired version (the server
    answers 410 Gone), and every stream is cut after a few events."""

    def __init__(self, resource: Resource, cut_after: int, expired_version: str) -> None:
        self.resource = resource
        self.cut_after = cut_after
        self.expired_version = expired_version
        self.watch_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resource, name)

    async def watch(
        self, version: str, label_selector: str = "", timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watch_calls += 1
        if self.watch_calls == 1:
            version = self.expired_version  # pushed out of the watch cache: a real 410
        seen = 0
        async for event in self.resource.watch(version, label_selector, timeout_seconds):
            yield event
            seen += 1
            if seen >= self.cut_after:
                raise ClusterUnavailable("connection reset (injected)")


@pytest.fixture
async def cluster(kubeconfig: Path, namespace: str) -> AsyncIterator[Cluster]:
    connection = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    yield connection
    await connection.close()


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"qaas.dev/informer-test": "yes"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


async def test_expired_watch_and_cut_streams_lose_nothing_and_repeat_nothing(
    cluster: Cluster, sandbox: SandboxState
) -> None:
    pods = cluster.resource(PODS)
    _, expired = await pods.list(SELECTOR)
    await pods.create(_pod("older"))
    await pods.create(_pod("old"))
    await asyncio.to_thread(sandbox.compact)  # `expired` is now older than etcd keeps
    faulty = FaultyWatch(pods, cut_after=3, expired_version=expired)
    handled: list[tuple[str, str, str]] = []  # (type, uid, resourceVersion)

    async def record(kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        handled.append((kind, meta["uid"], meta["resourceVersion"]))

    informer = Informer(faulty, SELECTOR, record, max_backoff=0.2)  # type: ignore[arg-type]
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)

        async def relisted_after_gone() -> bool:
            return informer.relists == 2

        # The changes below go through the re-watched streams: had they all happened before the
        # relist that answers the 410, "p0" would never have been seen at all.
        await eventually(relisted_after_gone)
        for i in range(6):
            await pods.create(_pod(f"p{i}"))
        await pods.delete("p0")
        await pods.delete("older")
        await pods.delete("old")

        async def converged() -> bool:
            actual, _ = await pods.list(SELECTOR)
            truth = {p["metadata"]["uid"]: p["metadata"]["resourceVersion"] for p in actual}
            mine = {uid: p["metadata"]["resourceVersion"] for uid, p in informer.cache.items()}
            return (
                mine == truth
                and len(truth) == 5
                and all(p["status"].get("phase") == "Running" for p in actual)
            )

        await eventually(converged, within=20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert informer.gone >= 1, "the expired version should have been answered with 410"
    # The first list and the one after the 410; a cut stream is watched again from its last
    # version instead of listing everything again.
    assert informer.relists == 2
    assert informer.rewatches >= 2, "the cuts should have been watched again"
    assert faulty.watch_calls >= 3
    changes = [(uid, version) for kind, uid, version in handled if kind != "DELETED"]
    assert len(changes) == len(set(changes)), "a change was handed over twice"
    # The final state of each pod was handed over (nothing lost in the final state).
    final = {uid: version for uid, version in changes}
    assert {
        uid: p["metadata"]["resourceVersion"] for uid, p in informer.cache.items()
    }.items() <= final.items()
    # Every pod it knew of that is gone now was handed over as DELETED, once: "older", "old"
    # (known from the list) and "p0" (seen through the re-watched streams).
    deleted = [uid for kind, uid, _ in handled if kind == "DELETED"]
    assert len(deleted) == len(set(deleted))
    assert set(deleted) == {uid for uid, _ in changes} - informer.cache.keys()
    assert len(deleted) == 3


async def test_the_apiserver_expires_a_compacted_version_with_gone(
    cluster: Cluster, sandbox: SandboxState
) -> None:
    pods = cluster.resource(PODS)
    _, old_version = await pods.list(SELECTOR)
    await pods.create(_pod("newer"))
    await pods.delete("newer")  # two writes: the version after old_version is compacted too
    await asyncio.to_thread(sandbox.compact)
    with pytest.raises(Gone):
        async for _ in pods.watch(old_version, SELECTOR, timeout_seconds=5):
            pass


async def test_a_failing_handler_delays_a_change_but_never_loses_it(cluster: Cluster) -> None:
    """The handler fails (as when the database is down) for a while: the informer keeps running,
    says it is failing, and hands every change over again until it is handled."""
    pods = cluster.resource(PODS)
    outage = {"left": 4}  # the next four calls fail
    handled: dict[str, str] = {}  # pod name -> the last phase handled

    async def flaky(kind: str, pod: dict[str, Any]) -> None:
        if outage["left"] > 0:
            outage["left"] -= 1
            raise ConnectionRefusedError("the database is down (injected)")
        handled[pod["metadata"]["name"]] = (pod.get("status") or {}).get("phase", "")

    informer = Informer(pods, SELECTOR, flaky, max_backoff=0.2)
    task = asyncio.create_task(informer.run())
    try:
        await pods.create(_pod("during-outage"))

        async def running_was_handled() -> bool:
            return handled.get("during-outage") == "Running"

        await eventually(running_was_handled, within=20)
        assert not task.done(), "the informer must outlive its handler's failures"
        assert informer.handler_failures >= 1
        assert informer.failing_since is None, "healthy again once a relist succeeded"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
