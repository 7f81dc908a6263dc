"""The kill -9 harness (issue 10, point 5): bursts of user mutations, a SIGKILL at a random
moment of each, a restart, then a bounded wait for the cluster, the database and the API to
agree. Nothing here sleeps for a fixed time except the kill moment, which is the point.

A trial: list the networks left from earlier trials; start a burst (``chaos_burst``: create a
few networks, add peers to each, delete one of them and every older network, all concurrently);
SIGKILL ``qaas serve`` after a seeded random delay within ``kill_window``; restart it; wait
until ``/readyz`` answers and then until a snapshot passes every rule of ``chaos_check`` (or
``converge_within`` passes: the last snapshot's disagreements are then the trial's findings).
Convergence time is measured from the restart to the first agreeing snapshot.

``room`` (default 5) makes the cluster able to place only that many node pods: filler pods
(no QaaS labels) take the rest of each sandbox node's CPU, so every trial ends with some nodes
RUNNING and some PENDING with "Unschedulable: ...", and both rules are exercised.

``faults`` puts the fault proxy (``tests/faults/proxy.py``) between the server and the
apiserver: the server's kubeconfig points at the proxy; the harness itself reads the cluster
directly.

Example::

    report = await run_chaos(ChaosConfig(kubeconfig, database_url, "chaos-ns", workdir, trials=3))
    assert not report.disagreements, report.table()
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from app.cluster.objects import selector_for
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from tests.faults.chaos_burst import Api, Ledger, run_burst
from tests.faults.chaos_check import Disagreement, Verdict, judge
from tests.faults.chaos_faults import make_proxy
from tests.faults.chaos_room import make_room
from tests.faults.chaos_server import (
    KubeAccess,
    ServerProcess,
    StartupFailed,
    create_admin_token,
    environment,
)
from tests.faults.chaos_snapshot import SnapshotReader
from tests.faults.proxy import FaultProxy, Rule

POLL = 0.25  # seconds between two snapshots while waiting for agreement
OLDER = "query { networks(first: 100) { edges { node { id nodes(first: 100) { edges { node { id } } } } } } }"  # noqa: E501


@dataclass
class ChaosConfig:
    kubeconfig: Path
    database_url: str  # migrated here if needed
    namespace: str  # the tenant's namespace (QAAS_NAMESPACE); must exist, with its ServiceAccount
    workdir: Path  # the server's log and the proxy's kubeconfig go here
    trials: int = 3
    seed: int = 0
    networks: int = 3  # per burst
    peers: int = 2  # per network
    kill_window: float = 3.0  # the kill comes uniformly within this many seconds of the burst
    converge_within: float = 45.0
    room: int | None = 5  # node pods the cluster can place; None: leave the cluster as it is
    faults: Sequence[Rule] | None = None  # the proxy's rules; None: no proxy
    resync_seconds: float = 2.0
    extra_env: dict[str, str] = field(default_factory=dict)  # more QAAS_* for the server
    progress: Callable[[str], None] = lambda _: None
    time_budget: float | None = None  # stop starting trials after this many seconds


@dataclass(frozen=True)
class TrialRecord:
    trial: int
    kill_at: float  # seconds into the burst
    killed: bool
    ready_after: float  # restart to /readyz 200
    converged_after: float | None  # restart to agreement; None: not within the bound
    disagreements: int


@dataclass
class ChaosReport:
    trials: list[TrialRecord] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    disagreements: list[Disagreement] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)  # pods judged ready / unschedulable
    startup_failures: Counter[str] = field(default_factory=Counter)  # by the server's last word
    server_log: Path | None = None
    stopped_early: str | None = None
    crashed: bool = False

    @property
    def kills(self) -> int:
        return sum(1 for t in self.trials if t.killed)

    @property
    def convergence(self) -> list[float]:
        return sorted(t.converged_after for t in self.trials if t.converged_after is not None)

    def figures(self) -> list[tuple[str, str]]:
        tally, ledger = self.ledger.tally, self.ledger
        rows = [
            ("trials", str(len(self.trials))),
            ("kills (SIGKILL)", str(self.kills)),
            ("mutations sent / accepted", f"{ledger.sent()} / {ledger.count('accepted')}"),
        ]
        for kind in sorted({key.split(":")[0] for key in tally}):
            outcomes = ("accepted", "rejected", "lost", "error", "skipped")
            parts = [f"{o} {tally[f'{kind}:{o}']}" for o in outcomes if tally[f"{kind}:{o}"]]
            rows.append((f"  {kind}", ", ".join(parts)))
        if ledger.refusals:
            refusals = sorted(ledger.refusals.items())
            rows.append(("  userErrors", ", ".join(f"{k} {n}" for k, n in refusals)))
        times = self.convergence
        if times:
            p50, worst = statistics.median(times), times[-1]
            rows.append(("convergence p50 / max", f"{p50:.2f} s / {worst:.2f} s"))
            ready = sorted(t.ready_after for t in self.trials)
            p50, worst = statistics.median(ready), ready[-1]
            rows.append(("  of which restart to /readyz", f"{p50:.2f} s / {worst:.2f} s"))
        unconverged = sum(1 for t in self.trials if t.converged_after is None)
        rows.append(("trials not converged", str(unconverged)))
        judged = f"{self.seen['ready']} / {self.seen['unschedulable']}"
        rows.append(("pods judged ready / unschedulable", judged))
        injected = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        rows.append(("faults injected", injected or "none"))
        if self.startup_failures:
            rows.append(("server exits at start-up", str(sum(self.startup_failures.values()))))
        rows.append(("disagreements", str(len(self.disagreements))))
        if self.stopped_early:
            rows.append(("stopped early", self.stopped_early))
        return rows

    def table(self) -> str:
        rows = self.figures()
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"  - {d}" for d in self.disagreements]
        lines += [f"  start-up exit ({n}x): {why}" for why, n in self.startup_failures.items()]
        lines += [f"  userError: {rejection}" for rejection in self.ledger.rejections[:20]]
        if self.ledger.errors:
            lines.append(
                f"server errors ({len(self.ledger.errors)}), first: {self.ledger.errors[0]}"
            )
        if self.server_log is not None:
            lines.append(f"server log: {self.server_log}")
        return "\n".join(lines)


class Harness:
    def __init__(self, cfg: ChaosConfig, report: ChaosReport, server: ServerProcess,
                 reader: SnapshotReader, token: str) -> None:  # fmt: skip
        self.cfg = cfg
        self.report = report
        self.server = server
        self.reader = reader
        self.token = token
        self.rng = random.Random(cfg.seed)

    def api(self) -> Api:
        return Api(self.server.url, self.token)

    async def older_networks(self) -> list[str]:
        data = await self.api().data(OLDER)
        ids = []
        for edge in data["networks"]["edges"]:
            network = edge["node"]
            ids.append(network["id"])
            nodes = {e["node"]["id"] for e in network["nodes"]["edges"]}
            self.report.ledger.nodes_of.setdefault(network["id"], set()).update(nodes)
        return ids

    async def trial(self, number: int) -> None:
        ledger = self.report.ledger
        self.reader.api = self.api()
        older = await self.older_networks()
        kill_at = self.rng.uniform(0.0, self.cfg.kill_window)

        async def killer() -> bool:
            await asyncio.sleep(kill_at)  # the random moment: the one fixed wait of the harness
            return self.server.kill9()

        kill = asyncio.create_task(killer())
        await run_burst(
            self.api(), ledger, trial=number, networks=self.cfg.networks, peers=self.cfg.peers,
            rng=self.rng, older=older, alive=lambda: self.server.alive,
        )  # fmt: skip
        killed = await kill
        restarted = time.monotonic()
        ready = await self.start()
        self.reader.api = self.api()  # a new port at each start
        due = [gid for net, trial in ledger.deleted.items() if trial == number
               for gid in ledger.nodes_of.get(net, ())]  # fmt: skip
        verdict, took = await self.converge(number, restarted, due)
        self.report.seen.update(verdict.seen)
        self.report.disagreements.extend(verdict.disagreements)
        self.report.trials.append(
            TrialRecord(number, kill_at, killed, ready, took, len(verdict.disagreements))
        )
        outcome = f"agreed after {took:.2f}s" if took is not None else "DID NOT AGREE"
        self.cfg.progress(
            f"trial {number}: kill at {kill_at:.2f}s, ready {ready:.2f}s, {outcome} "
            f"({verdict.seen['ready']} ready, {verdict.seen['unschedulable']} unschedulable)"
        )
        for disagreement in verdict.disagreements:
            self.cfg.progress(f"  {disagreement}")

    async def start(self, attempts: int = 10) -> float:
        """Start the server until it is ready, as a supervisor would (kubelet restarts a pod
        whose process exits); start-up failures are counted. Returns seconds to ready."""
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            self.server.start()
            try:
                await self.server.wait_ready()
                return time.monotonic() - started
            except StartupFailed as failure:
                self.report.startup_failures[failure.reason] += 1
                self.cfg.progress(f"  the server exited during start-up: {failure.reason}")
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def converge(
        self, number: int, restarted: float, lookups: list[str]
    ) -> tuple[Verdict, float | None]:
        """Poll snapshots until one agrees (returns the time since the restart) or the bound."""
        deadline = time.monotonic() + self.cfg.converge_within
        while True:
            try:
                snapshot = await self.reader.read(lookups)
                verdict = judge(snapshot, self.report.ledger, number, lookups)
            except (httpx.HTTPError, RuntimeError, ApiException) as error:
                verdict = Verdict([Disagreement(number, "unreadable", "snapshot", repr(error))])
            if verdict.agreed:
                return verdict, time.monotonic() - restarted
            if time.monotonic() > deadline:
                return verdict, None
            await asyncio.sleep(POLL)


async def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    """Run ``cfg.trials`` trials (fewer if ``time_budget`` runs out) and return the report."""
    report = ChaosReport(server_log=cfg.workdir / "server.log")
    started = time.monotonic()
    await upgrade(cfg.database_url)
    engine = make_engine(cfg.database_url)
    kube_config = client.Configuration()
    await config.load_kube_config(str(cfg.kubeconfig), client_configuration=kube_config)
    proxy: FaultProxy | None = None
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        kube = await stack.enter_async_context(client.ApiClient(kube_config))
        server_kubeconfig = cfg.kubeconfig
        if cfg.faults is not None:
            access = KubeAccess.of(cfg.kubeconfig)
            proxy = make_proxy(access, cfg.faults, cfg.seed)
            await proxy.start()
            stack.push_async_callback(proxy.stop)
            server_kubeconfig = proxy.kubeconfig(cfg.workdir / "proxy.kubeconfig", access.token)
        if cfg.room is not None:
            stack.push_async_callback(await make_room(kube, cfg.namespace, cfg.room))
        env = environment(cfg.database_url, server_kubeconfig, cfg.namespace,
                          cfg.resync_seconds, cfg.extra_env)  # fmt: skip
        token = await create_admin_token(env, cfg.workdir)
        server = ServerProcess(env, cfg.workdir / "server.log", cfg.workdir)
        stack.callback(server.stop)
        reader = SnapshotReader(
            Api(server.url, token), make_sessionmaker(engine), kube, cfg.namespace,
            selector_for(env.get("QAAS_INSTANCE", "qaas")),
        )  # fmt: skip
        harness = Harness(cfg, report, server, reader, token)
        try:
            await harness.start()
            for number in range(1, cfg.trials + 1):
                if cfg.time_budget is not None and time.monotonic() - started > cfg.time_budget:
                    report.stopped_early = f"time budget of {cfg.time_budget:.0f}s spent"
                    break
                await harness.trial(number)
        except Exception as error:  # the figures so far are still worth reporting
            report.stopped_early = f"crashed in trial {len(report.trials) + 1}: {error!r}"
            report.crashed = True
        finally:
            if proxy is not None:
                report.faults.update(proxy.injected)
    return report
