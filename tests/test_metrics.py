"""GET /metrics after real work: a create/add/delete flow on the sandbox, GraphQL requests of
every outcome, a rate-limited mutation, the leader gauge; and QAAS_LOG_FORMAT=json.

The metrics are process-wide (one registry for every app of the test process), so each test
compares the figures after its work with those before it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from app.config import Settings
from app.events.bus import InProcessBus, NodeChange
from app.metrics import exposition
from app.server import create_app
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient, eventually

ROOT = Path(__file__).resolve().parents[1]
Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]

CREATE = """mutation($n: String!) { networkCreate(input: {name: $n, consensus: RAFT}) {
  network { id } operation { id } userErrors { code } } }"""
ADD = """mutation($id: ID!, $n: String!) { nodeAdd(input: {networkId: $id, name: $n}) {
  node { id } operation { id } userErrors { code } } }"""
DELETE = """mutation($id: ID!) { networkDelete(input: {id: $id}) {
  operation { id } userErrors { code } } }"""
OPERATION = "query($id: ID!) { operation(id: $id) { state message } }"
NETWORKS = "{ networks(first: 10) { totalCount } }"


def parse(text: str) -> Figures:
    figures: Figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            figures[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return figures


async def scrape(app: Starlette) -> tuple[str, Figures]:
    """GET /metrics as Prometheus would: no token."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qaas.test"
    ) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


def value(figures: Figures, name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Figures, after: Figures, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def settle(api: GraphQLClient, operation_id: str) -> None:
    async def done() -> bool:
        op = (await api.data(OPERATION, id=operation_id))["operation"]
        assert op["state"] != "FAILED", op
        return bool(op["state"] == "SUCCEEDED")

    await eventually(done, within=60)


async def test_metrics_show_a_create_add_delete_flow(
    app: Starlette, api: GraphQLClient, tenant: CallerTenant
) -> None:
    _, before = await scrape(app)
    created = (await api.data(CREATE, n="metered"))["networkCreate"]
    network_id = created["network"]["id"]
    await settle(api, created["operation"]["id"])
    added = (await api.data(ADD, id=network_id, n="peer-1"))["nodeAdd"]
    await settle(api, added["operation"]["id"])
    await api.data(DELETE, id=network_id)

    async def gone() -> bool:
        return bool((await api.data(NETWORKS))["networks"]["totalCount"] == 0)

    await eventually(gone, within=60)
    await eventually(lambda: _deleted_statefulsets(app, before), within=30)
    # Requests that fail, each in its own way.
    bad = await api.execute("{ nope }")
    assert bad["errors"][0]["message"]
    broken = await api.http.post("/graphql", json={"query": "{"})
    assert broken.status_code == 200, broken.text
    anonymous = await api.http.post(
        "/graphql", json={"query": NETWORKS}, headers={"Authorization": "Bearer qaas_nothing"}
    )
    assert anonymous.status_code == 401
    await api.data(NETWORKS)  # the same query twice: the second is a cached answer
    await api.data(NETWORKS)

    text, after = await scrape(app)
    # The mutations' kicks: passes over their networks only.
    assert grew(before, after, "qaas_reconcile_passes_total", scope="networks") > 0
    assert grew(before, after, "qaas_reconcile_pass_seconds_count", scope="networks") > 0
    for kind in ("Service", "StatefulSet"):
        assert grew(before, after, "qaas_cluster_objects_total", kind=kind, action="created") >= 2
        assert grew(before, after, "qaas_cluster_objects_total", kind=kind, action="deleted") >= 2
    assert value(after, "qaas_informer_relists_total") > 0
    assert value(after, "qaas_leader") == 1
    assert grew(before, after, "qaas_graphql_requests_total", type="mutation", outcome="ok") >= 3
    assert grew(before, after, "qaas_graphql_requests_total", type="query", outcome="ok") >= 3
    assert grew(before, after, "qaas_graphql_request_seconds_count", type="mutation") >= 3
    assert (
        grew(before, after, "qaas_graphql_requests_total", type="query", outcome="client_error")
        >= 1
    )
    assert (
        grew(before, after, "qaas_graphql_requests_total", type="unknown", outcome="client_error")
        >= 1
    )
    assert (
        grew(
            before, after, "qaas_graphql_requests_total", type="unknown", outcome="unauthenticated"
        )
        >= 1
    )
    assert grew(before, after, "qaas_graphql_cached_answers_total") >= 1
    # No tenant's name, namespace or ids in what anyone may read without a token.
    for secret in (tenant.id, tenant.namespace, network_id, "metered", "peer-1"):
        assert secret not in text


async def _deleted_statefulsets(app: Starlette, before: Figures) -> bool:
    _, now = await scrape(app)
    name, labels = "qaas_cluster_objects_total", {"kind": "StatefulSet", "action": "deleted"}
    return grew(before, now, name, **labels) >= 2


class TestRateLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"mutation_burst": 1, "mutations_per_minute": 1.0})

    async def test_a_rate_limited_mutation_is_counted(
        self, app: Starlette, api: GraphQLClient
    ) -> None:
        _, before = await scrape(app)
        await api.data(CREATE, n="first")
        refused = await api.execute(CREATE, n="second")
        assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        _, after = await scrape(app)
        assert grew(before, after, "qaas_mutations_rate_limited_total") == 1
        labels = {"type": "mutation", "outcome": "rate_limited"}
        assert grew(before, after, "qaas_graphql_requests_total", **labels) == 1


async def test_the_leader_gauge_follows_the_control_loop(settings: Settings) -> None:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await eventually(lambda: _leading(application, 1.0), within=30)
    _, after = await scrape(application)
    assert value(after, "qaas_leader") == 0


async def _leading(app: Starlette, expected: float) -> bool:
    _, figures = await scrape(app)
    return value(figures, "qaas_leader") == expected


def figures() -> Figures:
    body, _ = exposition()  # what GET /metrics answers (the tests above read it over HTTP)
    return parse(body.decode())


async def test_subscribers_and_coalesced_updates_are_counted() -> None:
    bus = InProcessBus()
    before = figures()
    async with bus.subscribe() as slow:
        during = figures()
        for state in ("a", "b", "c"):
            bus.publish(NodeChange(node_id="n", network_id="w", tenant_id="t", snapshot=state))
        assert (await slow.get()).snapshot == "c"
    after = figures()
    assert grew(before, during, "qaas_subscribers") == 1
    assert grew(before, after, "qaas_subscribers") == 0
    assert grew(before, after, "qaas_subscription_updates_coalesced_total") == 2


async def test_json_log_lines_parse_one_by_one(tmp_path: Path) -> None:
    """`qaas migrate` (configured as `qaas serve` is) logs JSON; an exception comes as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QAAS_")}
    env.update(QAAS_LOG_FORMAT="json", QAAS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/q.db")
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, not the one installed
    qaas = Path(sys.executable).parent / "qaas"
    migrate = await asyncio.create_subprocess_exec(
        str(qaas), "migrate", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    _, stderr = await migrate.communicate()
    assert migrate.returncode == 0, stderr.decode()
    script = (
        "import logging\nfrom app.cli.logformat import configure_logging\n"
        "configure_logging('INFO', 'json')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n"
        "    logging.getLogger('qaas.test').exception('it failed: %s', 'why')\n"
    )
    failing = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, failed = await failing.communicate()
    lines = [json.loads(line) for line in (stderr + failed).decode().splitlines()]
    assert len(lines) >= 2
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert any(line["logger"].startswith("alembic") for line in lines)
    last = lines[-1]
    assert (last["level"], last["logger"], last["message"]) == (
        "ERROR",
        "qaas.test",
        "it failed: why",
    )
    assert "ZeroDivisionError" in last["exc_info"]
