"""networkJoin refuses a coordinator inside the cluster's own Service or pod ranges
(``QAAS_CLUSTER_CIDRS``): a tenant's peer could otherwise dial another tenant's coordinator in
the same cluster. An administrator may allow it (``QAAS_JOIN_ALLOW_CLUSTER_ADDRESSES``)."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ConfigError, Settings, load_settings
from tests.api.queries import NETWORK_JOIN
from tests.helpers import GraphQLClient

INSIDE = ["10.244.0.7", "10.244.200.1", "10.96.0.1", "10.111.255.254"]  # pods, Services


@pytest.fixture
def allow() -> bool:
    """QAAS_JOIN_ALLOW_CLUSTER_ADDRESSES: the default unless a test parametrizes it."""
    return False


@pytest.fixture
def settings(settings: Settings, allow: bool) -> Settings:
    return settings.model_copy(update={"join_allow_cluster_addresses": allow})


async def _join(api: GraphQLClient, ip: str) -> dict[str, Any]:
    joined: dict[str, Any] = (await api.data(NETWORK_JOIN, name="remote", ip=ip))["networkJoin"]
    return joined


@pytest.mark.parametrize("ip", INSIDE)
async def test_a_coordinator_inside_the_cluster_is_refused(api: GraphQLClient, ip: str) -> None:
    joined = await _join(api, ip)
    assert joined["network"] is None
    [error] = joined["userErrors"]
    assert error["field"] == ["input", "coordinatorIp"]
    assert error["code"] == "CLUSTER_ADDRESS"
    assert error["message"].startswith(f"{ip} is in the cluster's own range 10.")
    listed = await api.data("{ networks { totalCount } }")
    assert listed["networks"]["totalCount"] == 0


@pytest.mark.parametrize("allow", [True])
@pytest.mark.parametrize("ip", INSIDE[:1] + INSIDE[2:3])
async def test_an_administrator_may_allow_cluster_addresses(api: GraphQLClient, ip: str) -> None:
    joined = await _join(api, ip)
    assert joined["userErrors"] == []
    assert joined["network"]["name"] == "remote"


async def test_an_address_outside_the_cluster_ranges_is_accepted(api: GraphQLClient) -> None:
    joined = await _join(api, "10.1.2.3")
    assert joined["userErrors"] == []


def test_cluster_ranges_must_be_cidrs() -> None:
    with pytest.raises(ConfigError, match=r'QAAS_CLUSTER_CIDRS=.*"10.96.0.0/33" is not a CIDR'):
        load_settings(cluster_cidrs="10.96.0.0/33")
