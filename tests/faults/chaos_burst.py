"""One burst of mutations, issued the way a busy user would: concurrently, over HTTP GraphQL.

A burst creates a few networks; as each create returns, it adds two peers to that network and
(for one of them, chosen at random) deletes it at once, racing its own nodeAdds; meanwhile it
deletes every network left from earlier bursts, so the population stays bounded. The server
may be killed at any moment of it: what was in flight then is ``lost`` (its outcome unknown),
what would have been sent after is ``skipped``. ``Ledger`` keeps what the server accepted, which
is what the final check holds it to.

Example::

    ledger = Ledger()
    await run_burst(Api(server.url, token), ledger, trial=3, networks=3, peers=2, rng=rng,
                    older=[...], alive=lambda: server.alive)
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CREATE = """mutation($name: String!) { networkCreate(input: {name: $name, consensus: RAFT}) {
  network { id nodes(first: 10) { edges { node { id } } } } userErrors { code message } } }"""
ADD = """mutation($id: ID!, $name: String!) { nodeAdd(input: {networkId: $id, name: $name}) {
  node { id } userErrors { code message } } }"""
DELETE = """mutation($id: ID!) { networkDelete(input: {id: $id}) {
  operation { id } userErrors { code message } } }"""


class Api:
    """POSTs GraphQL to a QaaS server as one token's holder."""

    def __init__(self, base_url: str, token: str, timeout: float = 15.0) -> None:
        self.url = f"{base_url}/graphql"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        """The response body; raises httpx.HTTPError when the server is gone or answers non-200."""
        async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as http:
            response = await http.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.post(query, **variables)
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        data: dict[str, Any] = body["data"]
        return data


@dataclass
class Ledger:
    """Every mutation's fate, by kind ("networkCreate:accepted", ...), and what was accepted."""

    tally: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # "nodeAdd:NOT_FOUND": userErrors
    rejections: list[str] = field(default_factory=list)  # each refusal, with its messages
    errors: list[str] = field(default_factory=list)  # top-level GraphQL errors and HTTP errors
    created: dict[str, int] = field(default_factory=dict)  # network id -> trial it was created
    nodes_of: dict[str, set[str]] = field(default_factory=dict)  # network id -> known node ids
    delete_sent: set[str] = field(default_factory=set)  # network ids (outcome maybe unknown)
    deleted: dict[str, int] = field(default_factory=dict)  # network id -> trial of the delete

    def count(self, outcome: str) -> int:
        return sum(n for key, n in self.tally.items() if key.endswith(f":{outcome}"))

    def sent(self) -> int:
        return sum(n for key, n in self.tally.items() if not key.endswith(":skipped"))


class Burst:
    def __init__(self, api: Api, ledger: Ledger, trial: int, alive: Callable[[], bool]) -> None:
        self.api = api
        self.ledger = ledger
        self.trial = trial
        self.alive = alive

    async def mutate(self, kind: str, query: str, **variables: Any) -> dict[str, Any] | None:
        """The payload if the server accepted the mutation; None otherwise (tallied)."""
        if not self.alive():
            self.ledger.tally[f"{kind}:skipped"] += 1
            return None
        try:
            body = await self.api.post(query, **variables)
        except httpx.HTTPStatusError as error:
            self.ledger.tally[f"{kind}:error"] += 1
            self.ledger.errors.append(
                f"trial {self.trial} {kind}: HTTP {error.response.status_code}"
            )
            return None
        except httpx.HTTPError:
            # Killed while in flight: the mutation may or may not have committed.
            self.ledger.tally[f"{kind}:lost"] += 1
            return None
        if body.get("errors"):
            self.ledger.tally[f"{kind}:error"] += 1
            self.ledger.errors.append(f"trial {self.trial} {kind}: {body['errors']}")
            return None
        payload: dict[str, Any] = body["data"][kind]
        if payload["userErrors"]:
            codes = ",".join(sorted({e["code"] for e in payload["userErrors"]}))
            self.ledger.tally[f"{kind}:rejected"] += 1
            self.ledger.refusals[f"{kind}:{codes}"] += 1
            self.ledger.rejections.append(
                f"trial {self.trial} {kind}({variables}): {payload['userErrors']}"
            )
            return None
        self.ledger.tally[f"{kind}:accepted"] += 1
        return payload

    async def delete(self, network_id: str) -> None:
        self.ledger.delete_sent.add(network_id)
        if await self.mutate("networkDelete", DELETE, id=network_id) is not None:
            self.ledger.deleted[network_id] = self.trial

    async def add(self, network_id: str, name: str) -> None:
        payload = await self.mutate("nodeAdd", ADD, id=network_id, name=name)
        if payload is not None and payload["node"]:
            self.ledger.nodes_of.setdefault(network_id, set()).add(payload["node"]["id"])

    async def network(self, name: str, peers: int, delete_it: bool) -> None:
        payload = await self.mutate("networkCreate", CREATE, name=name)
        if payload is None:
            return
        network = payload["network"]
        self.ledger.created[network["id"]] = self.trial
        nodes = {e["node"]["id"] for e in network["nodes"]["edges"]}
        self.ledger.nodes_of.setdefault(network["id"], set()).update(nodes)
        steps = [self.add(network["id"], f"peer-{i}") for i in range(1, peers + 1)]
        if delete_it:
            steps.append(self.delete(network["id"]))
        await asyncio.gather(*steps)


def network_name(trial: int, index: int) -> str:
    return f"c{trial:04d}-{chr(ord('a') + index)}"


async def run_burst(
    api: Api,
    ledger: Ledger,
    *,
    trial: int,
    networks: int,
    peers: int,
    rng: random.Random,
    older: list[str],
    alive: Callable[[], bool],
) -> None:
    """One burst; returns when every mutation of it has an answer (or none will come)."""
    burst = Burst(api, ledger, trial, alive)
    doomed = rng.randrange(networks)
    await asyncio.gather(
        *(burst.delete(network_id) for network_id in older),
        *(burst.network(network_name(trial, i), peers, i == doomed) for i in range(networks)),
    )
