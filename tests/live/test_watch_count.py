"""However many subscribers there are, QaaS holds the same pod watches on the apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from pathlib import Path

import httpx
import pytest
import yaml

from app.config import Settings
from tests.live.conftest import LiveServer
from tests.live.test_subscriptions_gql import CREATE, post
from tests.live.wsclient import Subscriber

WATCH_LINE = re.compile(r"^apiserver_longrunning_gauge\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
QUERY = "subscription($id: ID) { nodeStatusChanged(networkId: $id) { id status } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A hundred connections of one token from one address: over the default caps."""
    return settings.model_copy(update={"max_ws_per_token": 100, "max_ws_per_address": 100})


async def pod_watches(kubeconfig: Path) -> int:
    """The apiserver's own count of open WATCH requests on pods (everyone's)."""
    config = yaml.safe_load(await asyncio.to_thread(kubeconfig.read_text))
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    async with httpx.AsyncClient(verify=context) as http:
        response = await http.get(
            f"{cluster['server']}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
    response.raise_for_status()
    total = 0.0
    for line in response.text.splitlines():
        match = WATCH_LINE.match(line)
        if match and 'resource="pods"' in match["labels"] and 'verb="WATCH"' in match["labels"]:
            total += float(match["value"])
    return int(total)


async def test_a_hundred_subscribers_add_no_pod_watch(live: LiveServer, kubeconfig: Path) -> None:
    created = await post(live, CREATE, name="watched")
    network_id = created["networkCreate"]["network"]["id"]

    async with Subscriber(live.ws_url, QUERY, {"id": network_id}, live.token) as first:
        await first.next()  # the snapshot: the subscription is live
        with_one = await pod_watches(kubeconfig)
        async with contextlib.AsyncExitStack() as stack:
            many = [
                await stack.enter_async_context(
                    Subscriber(live.ws_url, QUERY, {"id": network_id}, live.token)
                )
                for _ in range(99)
            ]
            await asyncio.gather(*(s.next() for s in many))
            with_hundred = await pod_watches(kubeconfig)
    assert with_one >= 1
    assert with_hundred == with_one
