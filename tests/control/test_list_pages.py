"""A list reads its objects in pages (``limit`` and ``continue``): the reconciler and the pod
informer decode one page at a time, and the event loop runs between two pages."""

from __future__ import annotations

from typing import Any

import pytest

from app.cluster import client
from app.cluster.client import SERVICES, Cluster


async def test_a_list_longer_than_a_page_is_read_in_pages(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = cluster.resource(SERVICES, namespace)
    for k in range(5):
        await services.create({
            "metadata": {"name": f"svc-{k}", "labels": {"qaas.dev/page-test": "yes"}},
            "spec": {"ports": [{"port": 80}]},
        })  # fmt: skip
    monkeypatch.setattr(client, "LIST_PAGE", 2)
    calls: list[str] = []
    real_call = cluster.caller.call

    async def call(verb: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(verb)
        return await real_call(verb, *args, **kwargs)

    monkeypatch.setattr(cluster.caller, "call", call)
    items, version = await services.list("qaas.dev/page-test=yes")
    assert sorted(item["metadata"]["name"] for item in items) == [f"svc-{k}" for k in range(5)]
    assert calls == ["list", "list", "list"]  # 2 + 2 + 1
    # The version to watch from is the snapshot's: no change since then is missed.
    assert int(version) >= max(int(item["metadata"]["resourceVersion"]) for item in items)

    calls.clear()
    items, _ = await services.list("qaas.dev/page-test=no")
    assert (items, calls) == ([], ["list"])
