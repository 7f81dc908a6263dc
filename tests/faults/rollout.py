"""A rolling update of two ``qaas serve`` replicas on one PostgreSQL database, done step by step
the way the Deployment controller does it for the PostgreSQL overlay (2 replicas, ``maxSurge:
1``, ``maxUnavailable: 0``), while the Lease and every replica's ``qaas_leader`` are recorded.
The harness of tests/faults/test_rollout.py.

The QaaS Deployment itself cannot run in the sandbox (a pod has no route to the host, where
PostgreSQL listens on loopback only, and the ``kubernetes`` Service's ClusterIP is refused), so
the replicas are real ``qaas serve`` processes on the host (`tests.faults.chaos_server`) and this
module plays the controller: start a new replica (with a changed environment value), wait until
it is ready, send SIGTERM to an old one (the most recently started first, as the controller
ranks them) and go on with the next new replica while the old one shuts down (a terminating pod
no longer counts against the surge), until both replicas are new and the old ones have exited.

Recorded meanwhile: (a) the Lease's history, from a watch on the Lease object; (b) each live
replica's ``qaas_leader`` from /metrics, all replicas asked at once in each poll round; (c) every
StatefulSet of the namespace, from a watch (its uid, and whether it was ever deleted); and (d) a
``networkCreate`` sent every second to one of the replicas that serve (the Service's endpoints:
ready and not terminating). ``check`` turns the record into the list of problems found.

Example::

    record = await run_rollout(RolloutConfig(kubeconfig, url, "ns", workdir))
    assert check(record) == []
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from kubernetes_asyncio import client, config, watch

from app.store.migrate import upgrade
from tests.faults.chaos_burst import Api
from tests.faults.chaos_server import ServerProcess, create_admin_token
from tests.faults.failover import CREATE, LEASE, FailoverConfig, election_env, until


@dataclass
class RolloutConfig(FailoverConfig):
    old_env: dict[str, str] = field(default_factory=lambda: {"QAAS_LOG_LEVEL": "INFO"})
    new_env: dict[str, str] = field(default_factory=lambda: {"QAAS_LOG_LEVEL": "WARNING"})


@dataclass
class RolloutRecord:
    lease_seconds: float
    lease: list[dict[str, Any]] = field(default_factory=list)  # spec per watch event, in order
    rounds: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # at, leader flags
    sts_uids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sts_deleted: list[str] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)  # (replica stopped, at)
    networks: list[str] = field(default_factory=list)  # accepted networkCreate names


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


Term = tuple[str, datetime.datetime, datetime.datetime]  # holder, from, to


def lease_terms(lease: list[dict[str, Any]]) -> list[Term]:
    """Each term of the Lease history: (holder, from its acquireTime, to its release's renewTime,
    or for a term that was taken over, its last renewTime plus the lease duration)."""
    terms: list[Term] = []
    holder, start, end = "", None, None
    for spec in [*lease, {}]:
        now = spec.get("holderIdentity") or ""
        if holder and now != holder:  # the term ends here
            assert start is not None
            assert end is not None
            terms.append((holder, start, _time(spec["renewTime"]) if spec and not now else end))
        if now and now != holder:
            start = _time(spec["acquireTime"])
        if now:
            duration = datetime.timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))
            end = _time(spec["renewTime"]) + duration
        holder = now
    return terms


def check(record: RolloutRecord) -> list[str]:
    """Every way the record shows two leaders, a leaderless stretch or work done twice; each
    problem starts with its kind (``two leaders: ...``)."""
    problems = []
    for at, flags in record.rounds:
        leaders = sorted(name for name, flag in flags.items() if flag)
        if len(leaders) > 1:
            problems.append(f"two leaders: at {at:.2f}s {leaders} all report qaas_leader 1")
    terms = lease_terms(record.lease)
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(terms):
        if b_start < a_end:
            problems.append(f"lease terms overlap: {b} from {b_start} before {a}'s end {a_end}")
    transitions = [spec.get("leaseTransitions") or 0 for spec in record.lease]
    if transitions and transitions[-1] - transitions[0] != max(0, len(terms) - 1):
        problems.append(
            f"lease history incomplete: leaseTransitions {transitions[0]}.."
            f"{transitions[-1]} for {len(terms)} terms"
        )
    holders = {holder for holder, _, _ in terms}
    for name in sorted({n for _, flags in record.rounds for n, flag in flags.items() if flag}):
        if name not in holders:
            problems.append(f"leader without the lease: {name} reported qaas_leader 1")
    for stopped, at in record.steps:
        back = next((t for t, flags in record.rounds if t > at and any(
            flag for name, flag in flags.items() if name != stopped)), None)  # fmt: skip
        if back is None or back - at > record.lease_seconds:
            problems.append(f"no leader: none within the lease duration after {stopped} stopped")
    for name in record.networks:
        uids = record.sts_uids.get(f"{name}-coordinator", set())
        if len(uids) != 1:
            problems.append(f"work not done once: {name} had {len(uids)} coordinator StatefulSets")
    if record.sts_deleted:
        problems.append(f"work not done once: StatefulSets deleted: {record.sts_deleted}")
    return problems


def summary(record: RolloutRecord) -> str:
    """One line for a person: the terms, the handovers' leaderless time, the work sent."""
    terms = ", ".join(holder for holder, _, _ in lease_terms(record.lease))
    gaps = []
    for stopped, at in record.steps:
        back = next((t for t, flags in record.rounds if t > at and any(
            flag for name, flag in flags.items() if name != stopped)), None)  # fmt: skip
        gaps.append(f"{stopped} stopped: a leader after {back - at:.2f}s" if back else "none")
    return (f"{len(record.rounds)} poll rounds, {len(record.lease)} Lease events, terms: "
            f"{terms}; {'; '.join(gaps)}; {len(record.networks)} networks accepted")  # fmt: skip


async def run_rollout(cfg: RolloutConfig) -> RolloutRecord:
    record = RolloutRecord(cfg.lease_seconds)
    await upgrade(cfg.database_url)
    token = await create_admin_token(election_env(cfg), cfg.workdir)
    servers = {
        name: ServerProcess(
            election_env(cfg, QAAS_LEADER_IDENTITY=name, **env), cfg.workdir / f"{name}.log",
            cfg.workdir,
        )
        for name, env in [("old-1", cfg.old_env), ("old-2", cfg.old_env),
                          ("new-1", cfg.new_env), ("new-2", cfg.new_env)]
    }  # fmt: skip
    serving: list[str] = []  # the Service's endpoints: ready, not terminating
    started = time.monotonic()
    kube_config = client.Configuration()
    await config.load_kube_config(str(cfg.kubeconfig), client_configuration=kube_config)
    async with client.ApiClient(kube_config) as kube, httpx.AsyncClient(timeout=0.5) as http:
        recorders = [
            asyncio.create_task(_watch(kube, cfg.namespace, "lease", record, started)),
            asyncio.create_task(_watch(kube, cfg.namespace, "sts", record, started)),
            asyncio.create_task(_poll(http, servers, record, started)),
        ]
        try:
            for name in ("old-1", "old-2"):  # the Deployment as it was before the change
                servers[name].start()
                await servers[name].wait_ready()
                serving.append(name)
            recorders.append(asyncio.create_task(_mutate(servers, serving, token, record)))
            exits = []
            for new in ("new-1", "new-2"):
                servers[new].start()
                await servers[new].wait_ready()
                serving.append(new)
                old = [n for n in serving if n.startswith("old")][-1]  # the newest old pod
                serving.remove(old)
                record.steps.append((old, time.monotonic() - started))
                cfg.progress(f"{new} ready; SIGTERM to {old} at {record.steps[-1][1]:.1f}s")
                exits.append(asyncio.create_task(_terminate(servers[old])))
            await asyncio.gather(*exits)  # `kubectl rollout status`: done
            cfg.progress(f"rollout done at {time.monotonic() - started:.1f}s")
            recorders.pop().cancel()  # no more mutations

            def all_done() -> bool:
                return all(record.sts_uids.get(f"{n}-coordinator") for n in record.networks)

            await until(all_done, 30 + 3 * cfg.lease_seconds, "every accepted network created")

            def led_after_last_step() -> bool:  # keep recording until a new leader shows
                at, flags = record.rounds[-1] if record.rounds else (0.0, {})
                return at > record.steps[-1][1] and any(flags.values())

            await until(led_after_last_step, 3 * cfg.lease_seconds, "a leader after the rollout")
        finally:
            for task in recorders:
                task.cancel()
            await asyncio.gather(*recorders, return_exceptions=True)
            for server in servers.values():
                await asyncio.to_thread(server.stop)
    return record


async def _terminate(server: ServerProcess) -> None:
    """SIGTERM, as the kubelet sends it to a pod being deleted; returns when it has exited."""
    assert server.proc is not None
    server.proc.terminate()
    code = await asyncio.to_thread(server.proc.wait, 30)
    if code not in (0, -signal.SIGTERM):  # uvicorn re-raises the signal once it has shut down
        raise AssertionError(f"a replica exited with {code} on SIGTERM:{server.log_tail()}")


async def _watch(
    kube: client.ApiClient, namespace: str, what: str, record: RolloutRecord, started: float
) -> None:
    """Record every change of the Lease (or of a StatefulSet), from its creation on."""
    if what == "lease":
        lister: Any = client.CoordinationV1Api(kube).list_namespaced_lease
        selector = {"field_selector": f"metadata.name={LEASE}"}
    else:
        lister, selector = client.AppsV1Api(kube).list_namespaced_stateful_set, {}
    version = "0"  # from the beginning of what the API server still has
    while True:
        async with watch.Watch() as stream:
            async for event in stream.stream(lister, namespace, resource_version=version,
                                             timeout_seconds=300, **selector):  # fmt: skip
                obj = event["raw_object"]
                version = obj["metadata"]["resourceVersion"]
                if what == "lease":
                    record.lease.append({**obj.get("spec", {}), "at": time.monotonic() - started})
                elif event["type"] == "DELETED":
                    record.sts_deleted.append(obj["metadata"]["name"])
                else:
                    record.sts_uids[obj["metadata"]["name"]].add(obj["metadata"]["uid"])


async def _poll(
    http: httpx.AsyncClient, servers: dict[str, ServerProcess], record: RolloutRecord,
    started: float,
) -> None:  # fmt: skip
    """Ask every running replica for ``qaas_leader`` at once, round after round."""

    async def flag(server: ServerProcess) -> int | None:
        try:
            text = (await http.get(f"{server.url}/metrics")).text
        except httpx.TransportError:
            return None  # starting, or shutting down
        line = next((ln for ln in text.splitlines() if ln.startswith("qaas_leader ")), None)
        return None if line is None else int(float(line.split()[1]))

    while True:
        live = {name: server for name, server in servers.items() if server.alive}
        at = time.monotonic() - started
        flags = await asyncio.gather(*(flag(server) for server in live.values()))
        answered = {name: f for name, f in zip(live, flags, strict=True) if f is not None}
        record.rounds.append((at, answered))
        await asyncio.sleep(0.02)


async def _mutate(
    servers: dict[str, ServerProcess], serving: list[str], token: str, record: RolloutRecord
) -> None:
    """A ``networkCreate`` each second, to the serving replicas in turn."""
    for number in itertools.count():
        name = f"ro-{uuid.uuid4().hex[:6]}"
        target = servers[serving[number % len(serving)]]
        with contextlib.suppress(httpx.HTTPError):  # the replica went away: not accepted
            payload = await Api(target.url, token).data(CREATE, n=name)
            assert payload["networkCreate"]["userErrors"] == [], payload
            record.networks.append(name)
        await asyncio.sleep(1.0)
