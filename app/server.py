"""The composition root: settings, database, cluster, control loop, GraphQL, HTTP routes.

``create_app(settings)`` returns the Starlette app; its lifespan connects everything and tears
it down in reverse. With no cluster configured it starts (or reuses) the local sandbox and says
so loudly in the log.

A database or cluster that cannot be used at start-up is one sentence (what, where, what to do).
On a workstation ``come_up(app)`` meets it before the server listens and raises it: `qaas serve`
prints it and exits 69. In a cluster, or with ``QAAS_STARTUP_RETRY=true``, the lifespan returns
at once (/healthz answers) and a task tries again with capped, jittered exponential backoff;
until it succeeds /readyz answers 503 and GraphQL the error ``UNAVAILABLE``, both with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.cluster.client import Cluster
from app.cluster.connect import (
    ClusterConfigError,
    ClusterTarget,
    check_access,
    connect,
    discover,
    in_cluster,
)
from app.cluster.errors import KubeError, NotFound
from app.cluster.objects import CONTAINER
from app.config import ConfigError, Settings, shared_bus
from app.control.leadership import Leadership, leadership_for
from app.control.loop import ControlLoop
from app.domain.text import one_line
from app.events.bus import EventBus, InProcessBus
from app.events.foreground import Foreground
from app.events.pg_bus import PostgresBus
from app.metrics import exposition
from app.services.api_deps import ApiDeps
from app.services.logs import LogsUnavailable, PodLogReader
from app.services.ratelimit import RateLimiter
from app.services.tenancy import bootstrap_first_tenant
from app.store.checkpoint import WalCheckpointer
from app.store.engine import DatabaseUnavailable, make_engine, make_sessionmaker, ping, sqlite_file
from app.store.migrate import MigrationNeeded, prepare
from app.store.node_feed import NodeFeed
from app.store.unit import write_session
from schema.build import ASSETS_PATH, GRAPHQL_PATH, QaasGraphQL
from schema.dashboard import dashboard_routes
from schema.graphiql import assets_route
from schema.http import HttpGuard
from schema.ready import WhenReady

if TYPE_CHECKING:  # imported lazily: only the embedded default starts a sandbox
    from app.sandbox.handle import Sandbox

log = logging.getLogger("qaas")

# What start-up may meet and says in one sentence; anything else is a bug, with a traceback.
STARTUP_FAULTS = (DatabaseUnavailable, MigrationNeeded, ClusterConfigError)
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
NOT_YET = "not reached yet"


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


async def _bootstrap_first_tenant(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """On a fresh embedded installation, make a "local" tenant and an ADMIN token for it.

    The token is printed once, to the terminal, never through the log (which may be shipped
    elsewhere). Production installations create their first token with `qaas token create`.
    """
    async with write_session(sessions) as session:
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


class Startup:
    """Brings up the database and the cluster, then the control loop, and says what is missing.

    ``pending`` names what is not up yet and why, one sentence each (for /readyz and GraphQL).
    Fail fast (``come_up``) raises the first fault; retry mode (``start`` with ``retry``: in a
    cluster, or ``QAAS_STARTUP_RETRY=true``) tries each missing part again in a background task.
    """

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        bus: EventBus,
        deps: ApiDeps,
        foreground: Foreground | None = None,
    ) -> None:
        self.settings, self.engine, self.bus, self.deps = settings, engine, bus, deps
        self.foreground = foreground or Foreground()  # the control loop makes way for answers
        self.retry = in_cluster() if settings.startup_retry is None else settings.startup_retry
        self.pending: dict[str, str] = {"cluster": NOT_YET, "database": NOT_YET}
        self.retry_in = RETRY_FIRST_SECONDS
        self.cluster: Cluster | None = None
        self.owned_sandbox: Sandbox | None = None
        self.control: Leadership | None = None  # runs the control loop while this one leads
        self.state: State | None = None  # the app's, where the control loop is published
        self._task: asyncio.Task[None] | None = None
        deps.control_problems = lambda: {"control loop": "not started yet"}

    @property
    def done(self) -> bool:
        return self.control is not None

    @property
    def is_leader(self) -> bool:
        """This replica runs the control loop (the hook for the ``qaas_leader`` gauge)."""
        return self.control is not None and self.control.is_leader

    def why_not_ready(self) -> str:
        reasons = " ".join(f"{name.capitalize()}: {why}." for name, why in self.pending.items())
        return f"QaaS is not ready yet. {reasons or 'Starting the control loop.'}"

    async def come_up(self) -> None:
        """Bring everything up now, or raise the first fault."""
        await self._attempt(keep_going=False)

    async def start(self) -> None:
        """From the lifespan: come up now, or (retry mode) keep trying in the background."""
        if self.done or self._task is not None:
            return
        if self.retry:
            self._task = asyncio.create_task(self._keep_trying(), name="startup-retry")
        else:
            await self.come_up()

    async def stop(self) -> None:
        """Cancel the retrying, then tear down in reverse whatever came up (a later ``start``
        begins afresh)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        control, cluster, sandbox = self.control, self.cluster, self.owned_sandbox
        self._task, self.control, self.cluster, self.owned_sandbox = None, None, None, None
        self.pending = {"cluster": NOT_YET, "database": NOT_YET}
        if control is not None:
            await control.stop()
        if cluster is not None:
            await cluster.close()
        await self.engine.dispose()
        if sandbox is not None:
            await asyncio.to_thread(sandbox.down)

    async def _keep_trying(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                if await self._attempt(keep_going=True):
                    log.info("start-up complete: the control loop runs")
                    return
            except Exception:  # a bug, not a fault: say it fully, and still try again
                log.exception("start-up failed unexpectedly; trying again")
            self.retry_in = random.uniform(delay / 2, delay)
            for name, why in self.pending.items():
                log.warning("not ready (%s): %s; next try in %.1f s", name, why, self.retry_in)
            await asyncio.sleep(self.retry_in)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _attempt(self, *, keep_going: bool) -> bool:
        """One try at each part not up yet; True once the control loop runs."""
        # The cluster first: its checks log nothing when they pass, so a fault is the only line.
        for name, step in (("cluster", self._cluster), ("database", self._database)):
            if name not in self.pending:
                continue
            try:
                await step()
            except STARTUP_FAULTS as fault:
                if not keep_going:
                    raise
                self.pending[name] = str(fault)
            except Exception as error:  # a bug, not a fault: fail fast shows the traceback
                if not keep_going:
                    raise
                log.exception("start-up: the %s failed unexpectedly", name)
                said = one_line(error)
                self.pending[name] = f"unexpected {type(error).__name__} ({said}); see the log"
            else:
                del self.pending[name]
        if self.pending:
            return False
        await self._start_control()
        return True

    async def _database(self) -> None:
        await prepare(self.settings.database_url)

    async def _cluster(self) -> None:
        settings = self.settings
        target = discover(settings.cluster, settings.kubeconfig)
        if target is None:
            sandbox_target, owned = await asyncio.to_thread(_sandbox_target)
            target, self.owned_sandbox = sandbox_target, self.owned_sandbox or owned
        cluster = await connect(target, settings.namespace, settings=settings)
        try:
            await check_access(cluster)
        except BaseException:
            await cluster.close()
            raise
        self.cluster = cluster

    async def _start_control(self) -> None:
        settings, deps, cluster = self.settings, self.deps, self.cluster
        assert cluster is not None
        if not settings.production:  # once everything answers: a token printed is usable
            await _bootstrap_first_tenant(deps.sessions, settings)
        # Leader election (app/control/leadership.py): the loop runs on one replica only.
        control = leadership_for(
            settings, deps.sessions, cluster, self.bus, self._publish, self.foreground
        )
        deps.kick = control.kick
        if isinstance(self.bus, PostgresBus):  # a mutation on any replica wakes this one's too
            self.bus.on_kick[:] = [control.kick]
            deps.kick = self.bus.kick
        deps.control_problems = lambda: control.problems(settings.unready_after_seconds)
        deps.cluster_reachable = cluster.reachable
        deps.pod_log = _pod_log_reader(cluster)
        deps.cluster_description = cluster.description
        await control.start()
        self.control = control
        log.info("cluster: %s, namespace %s", cluster.description, cluster.namespace)

    def _publish(self, loop: ControlLoop) -> None:
        if self.state is not None:
            self.state.control = loop  # the running loop, for tests and diagnostics


def _pod_log_reader(cluster: Cluster) -> PodLogReader:
    """Node.logs' way to the cluster: a node pod's QNM container log, None for a pod that is
    gone, ``LogsUnavailable`` with Kubernetes's reason for anything else it refused or failed."""

    async def read(namespace: str, pod: str, tail: int, limit_bytes: int) -> str | None:
        try:
            return await cluster.pod_log(namespace, pod, CONTAINER, tail, limit_bytes)
        except NotFound:
            return None
        except KubeError as error:
            raise LogsUnavailable(str(error)) from None

    return read


async def _cluster_check(cluster: Cluster | None) -> str:
    if cluster is None:
        return NOT_YET
    if await cluster.reachable():
        return "ok"
    return f"cannot reach the Kubernetes API at {cluster.description}"


async def come_up(app: Starlette) -> None:
    """Before serving, on a workstation: bring the database and the cluster up now, or release
    what was opened and raise the first fault (one sentence). In retry mode, nothing: the
    lifespan starts the retrying, so /healthz answers at once."""
    startup: Startup = app.state.startup
    startup.state = app.state
    if startup.retry:
        return
    try:
        await startup.come_up()
    except BaseException:
        await startup.stop()
        raise


def create_app(settings: Settings) -> Starlette:
    # SQLite's checkpoints run on a thread of their own, not in a commit on the event loop.
    database_file = sqlite_file(settings.database_url)
    engine = make_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout,
                         wal_checkpoints=database_file is None)  # fmt: skip
    sessions = make_sessionmaker(engine)
    shared = shared_bus(settings)
    pg_bus = PostgresBus(settings.database_url, NodeFeed(sessions)) if shared else None
    bus: EventBus = pg_bus or InProcessBus()
    limiter = RateLimiter(settings.mutations_per_minute, settings.mutation_burst)
    deps = ApiDeps(settings=settings, sessions=sessions, bus=bus, limiter=limiter)
    if pg_bus is not None:  # a token revoked on another replica, or by the CLI
        pg_bus.on_token_end.append(deps.token_ended)
        pg_bus.on_tokens_unheard.append(deps.tokens_unheard)
    graphql = QaasGraphQL(deps)
    foreground = Foreground()  # GraphQL requests in flight, which the control loop makes way for
    startup = Startup(settings, engine, bus, deps, foreground)

    @contextlib.asynccontextmanager
    async def lifespan(application: Starlette) -> AsyncIterator[None]:
        startup.state = application.state
        checkpoints = None
        if database_file is not None:
            checkpointer = WalCheckpointer(database_file)
            application.state.checkpointer = checkpointer
            checkpoints = asyncio.create_task(checkpointer.run(), name="sqlite-checkpoints")
        try:
            if pg_bus is not None:
                await pg_bus.start()
            await startup.start()
            yield
        finally:
            await deps.close()  # open WebSockets' token checks, tokens' last use
            if pg_bus is not None:
                await pg_bus.stop()  # before the engine goes: it reads through it
            await startup.stop()
            if checkpoints is not None:
                checkpoints.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checkpoints

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        # Each check is "ok" or one sentence saying why not; add a line to add a check.
        checks: dict[str, str] = {
            "database": startup.pending.get("database") or await ping(sessions) or "ok",
            "cluster": startup.pending.get("cluster") or await _cluster_check(startup.cluster),
        }
        bus_problem = pg_bus.problem(settings.unready_after_seconds) if pg_bus else None
        checks["events"] = bus_problem or "ok"
        failing = deps.control_problems()
        checks["control"] = (
            "ok"
            if not failing
            else "; ".join(f"{name}: {problem}" for name, problem in failing.items())
        )
        ready = startup.done and all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        body, content_type = exposition()  # no token: no tenant's name or id is in a label
        return Response(body, headers={"Content-Type": content_type})

    # Before start-up is done WhenReady answers alone; then the guard bounds the body and
    # authenticates before the view reads or parses anything.
    when_ready = WhenReady(HttpGuard(graphql, deps, foreground), startup)
    routes = [
        *dashboard_routes(GRAPHQL_PATH, f"{ASSETS_PATH}/graphql-ws.min.js"),  # /, /dashboard
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route(GRAPHQL_PATH, when_ready, methods=["GET", "POST"]),
        WebSocketRoute(GRAPHQL_PATH, when_ready),
        assets_route(ASSETS_PATH),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.deps = deps
    app.state.response_cache = graphql.cache
    app.state.startup = startup
    app.state.foreground = foreground
    return app


__all__ = ["ConfigError", "come_up", "create_app"]
