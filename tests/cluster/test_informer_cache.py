"""The informer's cache index: the objects with a label value, kept right through every change
the informer makes (a new object, a relabelled one, a deletion, a rollback)."""

from __future__ import annotations

from typing import Any

import pytest

from app.cluster.informer import Cache

LABEL = "qaas.dev/node-id"


def _pod(uid: str, node: str | None) -> dict[str, Any]:
    labels = {LABEL: node} if node else {}
    return {"metadata": {"uid": uid, "name": uid, "labels": labels}}


def _names(cache: Cache, node: str) -> set[str]:
    return {obj["metadata"]["name"] for obj in cache.having(node)}


def test_the_index_follows_every_change() -> None:
    cache = Cache(LABEL, {"a": _pod("a", "n1"), "b": _pod("b", "n1"), "c": _pod("c", None)})
    assert _names(cache, "n1") == {"a", "b"}
    assert cache.having("n2") == []

    cache["b"] = _pod("b", "n2")  # relabelled: it moves
    cache["d"] = _pod("d", "n2")
    assert (_names(cache, "n1"), _names(cache, "n2")) == ({"a"}, {"b", "d"})

    assert cache.pop("d")["metadata"]["name"] == "d"
    assert cache.pop("missing") is None
    del cache["a"]
    assert (_names(cache, "n1"), _names(cache, "n2")) == (set(), {"b"})
    cache["c"] = _pod("c", "n1")  # an unlabelled object gains the label
    assert _names(cache, "n1") == {"c"}
    assert set(cache) == {"b", "c"}


def test_a_cache_without_an_index_says_so() -> None:
    with pytest.raises(ValueError, match="no index"):
        Cache(None, {"a": _pod("a", "n1")}).having("n1")
