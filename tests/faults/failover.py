"""Two ``qaas serve`` processes on one database and one sandbox; the leader is SIGKILLed,
again and again. The harness of tests/faults/test_failover.py and bench/failover.py.

Each kill: find the leader from the Lease's holder (each process's QAAS_LEADER_IDENTITY), send
it a ``networkCreate`` (pending work: answered, not yet carried out), kill -9 it at once, then
time until the Lease names the survivor (the takeover) and until the network's coordinator
StatefulSet exists (the pending work done by the survivor), and until a ``networkChanged``
subscriber connected to the survivor before the kill is told that the coordinator is RUNNING
(the final state, observed by the new leader and carried to it through the event bus). The
killed process is started again (it follows) before the next kill, so the roles alternate.

Example::

    report = await run_failover(FailoverConfig(kubeconfig, url, "ns", workdir, kills=10))
    report.takeovers          # seconds, one per kill
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes_asyncio import client, config

from app.store.migrate import upgrade
from tests.faults.chaos_burst import Api
from tests.faults.chaos_server import ServerProcess, create_admin_token, environment
from tests.live.wsclient import Subscriber

LEASE = "qaas-control"  # <QAAS_INSTANCE>-control
EVENTS = "subscription { networkChanged { kind network { name } node { role status } } }"
CREATE = "mutation($n: String!) { networkCreate(input: {name: $n}) { network { id } userErrors { code } } }"  # noqa: E501


@dataclass
class FailoverConfig:
    kubeconfig: Path
    database_url: str  # migrated here if needed
    namespace: str  # QAAS_NAMESPACE: the Lease and the first tenant's objects live here
    workdir: Path
    kills: int = 1
    lease_seconds: float = 4.0
    renew_deadline: float = 3.0
    retry_period: float = 1.0
    progress: Callable[[str], None] = lambda _: None


@dataclass
class FailoverReport:
    lease_seconds: float
    takeovers: list[float] = field(default_factory=list)  # kill -> Lease names the survivor
    pending_done: list[float] = field(default_factory=list)  # kill -> the pending work is done
    survivor_saw: list[float] = field(default_factory=list)  # kill -> its subscriber saw RUNNING
    holders: list[str] = field(default_factory=list)  # the leader before each kill, then after


async def lease_holder(leases: client.CoordinationV1Api, namespace: str) -> str | None:
    with contextlib.suppress(client.ApiException):
        lease = await leases.read_namespaced_lease(LEASE, namespace)
        return lease.spec.holder_identity or None
    return None


async def until(probe: Callable[[], object], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        outcome = probe()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within:.0f}s")


def election_env(cfg: FailoverConfig, **extra: str) -> dict[str, str]:
    """A replica's environment: election on, with the config's (short) lease timings."""
    return environment(cfg.database_url, cfg.kubeconfig, cfg.namespace, resync_seconds=2.0, extra={
        "QAAS_LEADER_ELECTION": "on", "QAAS_LEASE_SECONDS": str(cfg.lease_seconds),
        "QAAS_LEASE_RENEW_DEADLINE": str(cfg.renew_deadline),
        "QAAS_LEASE_RETRY_PERIOD": str(cfg.retry_period), **extra,
    })  # fmt: skip


async def run_failover(cfg: FailoverConfig) -> FailoverReport:
    report = FailoverReport(cfg.lease_seconds)
    await upgrade(cfg.database_url)
    env = election_env(cfg)
    token = await create_admin_token(env, cfg.workdir)
    servers = {
        name: ServerProcess(
            {**env, "QAAS_LEADER_IDENTITY": name}, cfg.workdir / f"{name}.log", cfg.workdir
        )
        for name in ("replica-a", "replica-b")
    }
    kube_config = client.Configuration()
    await config.load_kube_config(str(cfg.kubeconfig), client_configuration=kube_config)
    async with client.ApiClient(kube_config) as kube:
        try:
            for server in servers.values():
                server.start()
            for server in servers.values():
                await server.wait_ready()
            for number in range(1, cfg.kills + 1):
                await _one_kill(cfg, kube, servers, token, report)
                cfg.progress(f"kill {number}: {report.holders[-2]} killed, {report.holders[-1]} "
                             f"leads after {report.takeovers[-1]:.2f}s, its pending work done "
                             f"after {report.pending_done[-1]:.2f}s")  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
    return report


async def _one_kill(
    cfg: FailoverConfig,
    kube: client.ApiClient,
    servers: dict[str, ServerProcess],
    token: str,
    report: FailoverReport,
) -> None:
    leases = client.CoordinationV1Api(kube)
    holder: str | None = None

    async def held() -> bool:
        nonlocal holder
        holder = await lease_holder(leases, cfg.namespace)
        return holder in servers

    await until(held, 3 * cfg.lease_seconds, "a replica holds the lease")
    assert holder is not None
    (survivor,) = set(servers) - {holder}
    name = f"fo-{uuid.uuid4().hex[:6]}"
    ws_url = servers[survivor].url.replace("http", "ws", 1) + "/graphql"
    async with Subscriber(ws_url, EVENTS, token=token) as subscriber:
        await _kill_during_work(cfg, kube, servers, token, report, holder, survivor, name,
                                subscriber)  # fmt: skip
    report.holders += [holder, survivor]
    servers[holder].start()  # back, as a follower
    await servers[holder].wait_ready()


async def _kill_during_work(
    cfg: FailoverConfig,
    kube: client.ApiClient,
    servers: dict[str, ServerProcess],
    token: str,
    report: FailoverReport,
    holder: str,
    survivor: str,
    name: str,
    subscriber: Subscriber,
) -> None:
    leases, apps = client.CoordinationV1Api(kube), client.AppsV1Api(kube)
    payload = await Api(servers[holder].url, token).data(CREATE, n=name)
    assert payload["networkCreate"]["userErrors"] == [], payload
    killed_at = time.monotonic()
    servers[holder].kill9()

    async def taken() -> bool:
        return await lease_holder(leases, cfg.namespace) == survivor

    await until(taken, 3 * cfg.lease_seconds, f"{survivor} takes the lease over")
    report.takeovers.append(time.monotonic() - killed_at)

    async def done() -> bool:
        with contextlib.suppress(client.ApiException):
            await apps.read_namespaced_stateful_set(f"{name}-coordinator", cfg.namespace)
            return True
        return False

    await until(done, 30 + 3 * cfg.lease_seconds, f"{survivor} creates {name}")
    report.pending_done.append(time.monotonic() - killed_at)

    async def running() -> None:
        while True:
            event = (await subscriber.next())["networkChanged"]
            node = event["node"] or {}
            if event["network"]["name"] == name and node.get("status") == "RUNNING":
                return

    try:
        await asyncio.wait_for(running(), 60)
    except TimeoutError:
        raise AssertionError(f"{survivor}'s subscriber never saw {name} RUNNING") from None
    report.survivor_saw.append(time.monotonic() - killed_at)
