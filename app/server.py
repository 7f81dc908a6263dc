"""The composition root: settings, database, cluster, control loop, GraphQL, HTTP routes.

``create_app(settings)`` returns the Starlette app; its lifespan connects everything and tears
it down in reverse. With no cluster configured it starts (or reuses) the local sandbox and says
so loudly in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route, WebSocketRoute

from app.cluster.client import Cluster
from app.cluster.connect import ClusterTarget, connect, discover
from app.config import ConfigError, Settings
from app.control.loop import ControlLoop
from app.control.reconciler import Reconciler
from app.events.bus import InProcessBus
from app.services.api_deps import ApiDeps
from app.services.ratelimit import RateLimiter
from app.services.tenancy import bootstrap_first_tenant
from app.store.engine import make_engine, make_sessionmaker, ping
from app.store.migrate import prepare
from schema.build import ASSETS_PATH, GRAPHQL_PATH, QaasGraphQL
from schema.graphiql import assets_route

if TYPE_CHECKING:  # imported lazily: only the embedded default starts a sandbox
    from app.sandbox.handle import Sandbox

log = logging.getLogger("qaas")


def _sandbox_target() -> tuple[ClusterTarget, Sandbox | None]:
    """Start (or reuse) the local sandbox; returns its target, and the handle to stop it with
    if we started it (a sandbox someone started with `qaas sandbox up` is left running)."""
    from app.sandbox.handle import Sandbox

    log.warning(
        "NO CLUSTER CONFIGURED (no in-cluster config, no KUBECONFIG, no ~/.kube/config): "
        "using the local QaaS sandbox. Set QAAS_KUBECONFIG or KUBECONFIG to use a real cluster."
    )
    sandbox = Sandbox.default()
    already = sandbox.state()
    state = sandbox.up(progress=log.info, detach=False)
    return ClusterTarget("kubeconfig", state.kubeconfig), (None if already else sandbox)


async def _open_cluster(settings: Settings) -> tuple[Cluster, Sandbox | None]:
    found = discover(settings.cluster, settings.kubeconfig)
    owned_sandbox: Sandbox | None = None
    if found is None:
        target, owned_sandbox = await asyncio.to_thread(_sandbox_target)
    else:
        target = found
    cluster = await connect(target, settings.namespace, settings=settings)
    log.info("cluster: %s, namespace %s", cluster.description, cluster.namespace)
    return cluster, owned_sandbox


async def _bootstrap_first_tenant(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """On a fresh embedded installation, make a "local" tenant and an ADMIN token for it.

    The token is printed once, to the terminal, never through the log (which may be shipped
    elsewhere). Production installations create their first token with `qaas token create`.
    """
    async with sessions.begin() as session:
        secret = await bootstrap_first_tenant(session, settings)
    if secret is None:
        return
    log.warning("created tenant 'local' and an ADMIN token for it (printed below, once)")
    banner = (
        "\n"
        "  QaaS created the tenant 'local' and this ADMIN token. It is shown only now:\n\n"
        f"      {secret}\n\n"
        "  Send it as `Authorization: Bearer <token>` (GraphiQL: the Headers tab).\n"
        "  More tokens: `qaas token create --tenant local --role member`.\n"
    )
    print(banner, file=sys.stderr, flush=True)


def create_app(settings: Settings) -> Starlette:
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    bus = InProcessBus()
    limiter = RateLimiter(settings.mutations_per_minute, settings.mutation_burst)
    deps = ApiDeps(settings=settings, sessions=sessions, bus=bus, limiter=limiter)
    graphql = QaasGraphQL(deps)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await prepare(settings.database_url)
        if not settings.production:
            await _bootstrap_first_tenant(sessions, settings)
        cluster, owned_sandbox = await _open_cluster(settings)
        control = ControlLoop(Reconciler(sessions, cluster, settings, bus))
        deps.kick = control.kick
        deps.cluster_reachable = cluster.reachable
        deps.cluster_description = cluster.description
        await control.start()
        try:
            yield
        finally:
            await control.stop()
            await cluster.close()
            await engine.dispose()
            if owned_sandbox is not None:
                await asyncio.to_thread(owned_sandbox.down)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        problem = await ping(sessions)
        checks["database"] = "ok" if problem is None else f"unreachable: {problem}"
        reachable = deps.cluster_reachable
        checks["cluster"] = "ok" if reachable and await reachable() else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    async def root(_: Request) -> RedirectResponse:
        return RedirectResponse(GRAPHQL_PATH)

    routes = [
        Route("/", root),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        WebSocketRoute(GRAPHQL_PATH, graphql),
        assets_route(ASSETS_PATH),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.deps = deps
    return app


__all__ = ["ConfigError", "create_app"]
