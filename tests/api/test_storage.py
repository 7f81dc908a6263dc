"""``networkCreate``'s ``storage``: defaults from the settings, chosen values stored and shown on
``Network.storage``, bad values refused with userErrors and nothing created."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.queries import network_count
from tests.helpers import GraphQLClient

CREATE = """
mutation($name: String!, $storage: NetworkStorageInput) {
  networkCreate(input: {name: $name, storage: $storage}) {
    network { name storage { size storageClass } }
    userErrors { field message code }
  }
}
"""


async def _create(api: GraphQLClient, name: str, storage: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await api.data(CREATE, name=name, storage=storage))["networkCreate"]
    return payload


async def test_defaults_come_from_the_settings(api: GraphQLClient) -> None:
    payload = await _create(api, "plain", None)
    assert payload["userErrors"] == []
    assert payload["network"]["storage"] == {"size": "1Gi", "storageClass": None}


async def test_chosen_storage_is_stored_and_shown(api: GraphQLClient) -> None:
    payload = await _create(api, "big", {"size": "5Gi", "storageClass": "fast-ssd"})
    assert payload["userErrors"] == []
    query = '{ network(name: "big") { storage { size storageClass } } }'
    shown = (await api.data(query))["network"]["storage"]
    assert shown == {"size": "5Gi", "storageClass": "fast-ssd"}


BAD = {
    "not a quantity": ({"size": "1 GB"}, "size"),
    "a unit Kubernetes lacks": ({"size": "1GB"}, "size"),
    "too small": ({"size": "1Ki"}, "size"),
    "over the maximum": ({"size": "101Gi"}, "size"),
    "a class with capitals": ({"storageClass": "Fast"}, "storageClass"),
    "a class with an underscore": ({"storageClass": "fast_ssd"}, "storageClass"),
}


@pytest.mark.parametrize(("storage", "field"), BAD.values(), ids=BAD.keys())
async def test_bad_storage_is_refused(api: GraphQLClient, storage: Any, field: str) -> None:
    payload = await _create(api, "refused", storage)
    assert payload["network"] is None
    [error] = payload["userErrors"]
    assert (error["field"], error["code"]) == (["input", "storage", field], "INVALID_INPUT")
    assert await network_count(api) == 0
