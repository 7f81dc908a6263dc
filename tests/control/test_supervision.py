"""Background work is supervised: a part that stops with an error is restarted, and /readyz
turns 503, naming the part and why, while the reconciler or a tenant's pod informer has been
failing for longer than QAAS_UNREADY_AFTER_SECONDS; it turns 200 again once they recover."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.control.loop import ControlLoop
from app.control.reconciler import Reconciler
from app.store.models import Tenant
from tests.conftest import CallerTenant
from tests.helpers import GraphQLClient, eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"unready_after_seconds": 0.5})


async def _ready(app: Starlette) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qaas.test"
    ) as http:
        response = await http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_readyz_names_a_failing_reconciler_then_recovers(
    monkeypatch: pytest.MonkeyPatch, app: Starlette, api: GraphQLClient, tenant: CallerTenant
) -> None:
    control: ControlLoop = app.state.control
    prepare = control.reconciler.namespaces.prepare
    broken = True

    async def flaky(of: Tenant) -> None:
        if broken:
            raise OSError("the namespace cannot be read")
        await prepare(of)

    monkeypatch.setattr(control.reconciler.namespaces, "prepare", flaky)
    control.kick()

    async def unready() -> dict[str, Any] | None:
        status, body = await _ready(app)
        return body if status == 503 else None

    body = await eventually(unready)
    assert body["database"] == "ok"
    assert body["control"].startswith("reconciler: failing for "), body
    assert "the namespace cannot be read" in body["control"]

    broken = False
    control.kick()

    async def ready() -> bool:
        return (await _ready(app))[0] == 200

    await eventually(ready)


async def test_readyz_names_a_failing_pod_informer_then_recovers(
    monkeypatch: pytest.MonkeyPatch, app: Starlette, api: GraphQLClient, tenant: CallerTenant
) -> None:
    control: ControlLoop = app.state.control
    record = control.observer.record
    broken = True

    async def database_down(*args: Any) -> None:
        if broken:
            raise ConnectionRefusedError("the database is restarting")
        await record(*args)

    monkeypatch.setattr(control.observer, "record", database_down)
    await api.data('mutation { networkCreate(input: {name: "watched"}) { network { id } } }')

    async def unready() -> dict[str, Any] | None:
        status, body = await _ready(app)
        return body if status == 503 and "pod-informer" in body["control"] else None

    body = await eventually(unready, within=20)
    assert f"pod-informer {tenant.namespace}: failing for " in body["control"], body
    assert "the database is restarting" in body["control"]

    broken = False

    async def running() -> bool:
        data = await api.data(
            "{ networks { edges { node { nodes { edges { node { status } } } } } } }"
        )
        node = data["networks"]["edges"][0]["node"]["nodes"]["edges"][0]["node"]
        return bool(node["status"] == "RUNNING")

    await eventually(running, within=30)  # the change that failed was handled again
    assert (await _ready(app))[0] == 200


async def test_a_part_that_stops_with_an_error_is_restarted(
    monkeypatch: pytest.MonkeyPatch, reconciler: Reconciler
) -> None:
    loop = ControlLoop(reconciler, max_restart_delay=0.1)
    run = reconciler.run
    calls = 0

    async def crashes_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug outside the pass's own error handling")
        await run()

    monkeypatch.setattr(reconciler, "run", crashes_once)
    await loop.start()
    try:

        async def passes_again() -> bool:
            return reconciler.passes > 0

        await eventually(passes_again)
    finally:
        await loop.stop()
    assert loop.restarts == 1
    assert calls == 2
