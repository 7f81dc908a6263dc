"""Polled list benchmark: dashboards polling the network list while pod statuses change.

What it does
    Starts a local Kubernetes sandbox (simulated pods, in a temporary folder, tied to this
    process), writes one tenant with ``--networks`` networks of ``--nodes`` nodes each into a
    fresh SQLite database (through the write services, as mutations would) and starts
    ``qaas serve`` on it (127.0.0.1, pinned to CPU 0, logging at WARNING, the response cache at
    its defaults), then waits until the nodes' statuses settle: the sandbox's node has room for
    80 node pods (8 CPUs, 100m each), so with 200 nodes 80 are RUNNING and the rest PENDING
    (Insufficient cpu); the list shows them all. From then on a change stream patches one
    running pod's status every 1/``--changes`` s through the apiserver (``restartCount + 1``,
    round robin): each patch is seen by the server's pod watch and written by its node
    writer, exactly as in production, and drops the tenant's cached answers.

    The load: ``wrk`` pinned to CPU 1, ``--connections`` connections (the polling dashboards)
    POSTing the list query of issue 14 for ``--seconds`` s, alternately against QaaS and
    against ``bench/reference_server.py`` (the same shape served by Strawberry from memory,
    also pinned to CPU 0), ``--rounds`` times each; the figure is the median of each.

How to read the figures
    QaaS       requests per second with the cache, under the change stream
    reference  requests per second of the in-memory Strawberry server (no changes: it has none)
    ratio      QaaS / reference; the goal of issue 14 is >= 5
    changes    pod status changes the stream made during the QaaS runs, and per second
    A run that got any answer other than a 200 without GraphQL errors fails the benchmark.

Usage::

    python bench/polled_list.py [--networks 50] [--nodes 4] [--changes 10] [--seconds 10]
                                [--profile FILE]

Needs ``wrk``. Bounded by ``--timeout`` seconds (180); exits 2 when out of time. Only 127.0.0.1
is contacted (the sandbox's apiserver listens there too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client, config

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, as in sandbox_pods.py

from app.config import load_settings
from app.domain.enums import Consensus, Role
from app.sandbox.processes import _die_with_parent, free_ports, stop
from app.services import networks, nodes
from app.services.results import commit_unless_refused
from app.services.tenancy import create_token
from app.store.engine import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from bench.fanout import log
from bench.harness import bounded_with_sandbox

HOST = "127.0.0.1"
NAMESPACE = "default"
LIST = (
    "{ networks(first: 50) { edges { node { id name consensus status "
    "nodes(first: 10) { edges { node { id name role status } } } } } } }"
)
COUNT_RUNNING = (
    "{ networks(first: 100) { edges { node { "
    "nodes(first: 100) { edges { node { status statusReason } } } } } } }"
)
MERGE_PATCH = "application/merge-patch+json"
SERVER_CPU, LOAD_CPU = "0", "1"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
errors = 0
threads = {{}}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
done = function(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("errors") end
  io.write(string.format("REQUESTS %d SECONDS %.3f BAD %d\\n",
    summary.requests, summary.duration / 1e6, bad))
end
"""


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else command


def database_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{workdir / 'bench.db'}"


async def populate(workdir: Path, count: int, per_network: int) -> str:
    """The tenant, its networks and nodes; returns an ADMIN token's secret."""
    url = database_url(workdir)
    await upgrade(url)
    engine = make_engine(url)
    settings = load_settings(
        database_url=url, namespace=NAMESPACE,
        tenant_max_networks=count, tenant_max_nodes=count * per_network,
    )  # fmt: skip
    try:
        sessions = make_sessionmaker(engine)
        tenant, _, secret = await create_token(sessions, "bench", Role.ADMIN, settings, "bench")
        for n in range(count):
            made = await commit_unless_refused(
                sessions,
                lambda w, n=n: networks.create_network(
                    w, tenant.id, f"net-{n:03d}", Consensus.RAFT, 600.0
                ),
            )
            if made.network is None:
                raise RuntimeError(f"networkCreate refused: {made.errors}")
            network_id = made.network.id
            for k in range(1, per_network):
                added = await commit_unless_refused(
                    sessions,
                    lambda w, k=k, i=network_id: nodes.add_node(
                        w, tenant.id, i, f"peer-{k}", 600.0
                    ),
                )
                if added.errors:
                    raise RuntimeError(f"nodeAdd refused: {added.errors}")
    finally:
        await engine.dispose()
    return secret


def start_server(workdir: Path, kubeconfig: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "QAAS_DATABASE_URL": database_url(workdir),
        "QAAS_KUBECONFIG": str(kubeconfig),
        "QAAS_CLUSTER": "kubeconfig",
        "QAAS_NAMESPACE": NAMESPACE,
        "QAAS_LOG_LEVEL": "WARNING",  # no access log line per request
        "QAAS_CHAIN_PROBE": "off",  # simulated pods: status from pods only
        "QAAS_KUBE_QPS": "500",
        "QAAS_KUBE_BURST": "500",
    }
    qaas = Path(sys.executable).with_name("qaas")
    with (workdir / "server.log").open("ab") as out:
        proc = subprocess.Popen(
            pinned(SERVER_CPU, [str(qaas), "serve", "--host", HOST, "--port", str(port)]),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=workdir, preexec_fn=_die_with_parent,
        )  # fmt: skip
    return proc, port


def start_reference(count: int, per_network: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_ports(1)[0]
    script = Path(__file__).with_name("reference_server.py")
    command = [sys.executable, str(script), "--port", str(port)]
    command += ["--networks", str(count), "--nodes", str(per_network)]
    proc = subprocess.Popen(
        pinned(SERVER_CPU, command), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    return proc, port


async def answering(url: str, headers: dict[str, str], query: str) -> dict[str, Any]:
    """The query's data once the server answers it without errors (polling while it starts)."""
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        while True:
            try:
                response = await http.post(url, json={"query": query})
                body: dict[str, Any] = response.json()
                if response.status_code == 200 and not body.get("errors"):
                    data: dict[str, Any] = body["data"]
                    return data
            except (httpx.TransportError, ValueError):
                pass
            await asyncio.sleep(0.5)


async def settled(url: str, headers: dict[str, str], expected: int) -> int:
    """Waits until the nodes' statuses stop changing (the same in two looks 3 s apart, none
    on its way: PROVISIONING or STARTING); returns how many are RUNNING. The sandbox's one
    node has room for 80 node pods (8 CPUs, 100m each): the others stay PENDING."""
    before: list[str] = []
    while True:
        data = await answering(url, headers, COUNT_RUNNING)
        found = [n["node"] for e in data["networks"]["edges"] for n in e["node"]["nodes"]["edges"]]
        statuses = [n["status"] for n in found]
        running = statuses.count("RUNNING")
        moving = {"PROVISIONING", "STARTING"} & set(statuses)
        if len(found) == expected and running and not moving and statuses == before:
            return running
        waiting = [n for n in found if n["status"] != "RUNNING"]
        why = f" (e.g. {waiting[0]['status']}: {waiting[0]['statusReason']})" if waiting else ""
        log(f"{running} of {expected} nodes RUNNING{why}")
        before = statuses
        await asyncio.sleep(3.0)


class ChangeStream:
    """Patches one pod's status (restartCount + 1) every 1/rate seconds, round robin."""

    def __init__(self, api: client.ApiClient, rate: float) -> None:
        self.core = client.CoreV1Api(api)
        self.rate = rate
        self.made = 0

    async def run(self, stop_at: asyncio.Event) -> None:
        pods = (await self.core.list_namespaced_pod(NAMESPACE)).items
        names = [p.metadata.name for p in pods if p.status.container_statuses]
        if not names:
            raise RuntimeError("no pod with a container status to change")
        started = time.monotonic()
        while not stop_at.is_set():
            name = names[self.made % len(names)]
            pod = await self.core.read_namespaced_pod_status(name, NAMESPACE)
            statuses = [self.core.api_client.sanitize_for_serialization(s)
                        for s in pod.status.container_statuses]  # fmt: skip
            statuses[0]["restartCount"] = int(statuses[0].get("restartCount") or 0) + 1
            await self.core.patch_namespaced_pod_status(
                name, NAMESPACE, {"status": {"containerStatuses": statuses}},
                _content_type=MERGE_PATCH,
            )  # fmt: skip
            self.made += 1
            delay = started + self.made / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop_at.wait(), delay)
                except TimeoutError:
                    pass


async def wrk(url: str, headers: dict[str, str], args: argparse.Namespace, folder: Path) -> float:
    """Requests per second of one wrk run; fails on any error answer."""
    auth = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script = folder / "post.lua"
    body = json.dumps(json.dumps({"query": LIST}))
    script.write_text(WRK_SCRIPT.format(body=body, auth=auth))
    command = pinned(LOAD_CPU, ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s",
                                "--timeout", "10s", "-s", str(script), url])  # fmt: skip
    done = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = (await done.communicate())[0].decode()
    found = re.search(r"REQUESTS (\d+) SECONDS ([\d.]+) BAD (\d+)", out)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed: {out}")
    requests, seconds, bad = int(found[1]), float(found[2]), int(found[3])
    if bad:
        raise RuntimeError(f"{bad} of {requests} answers were not 200 without errors: {out}")
    return requests / seconds


async def profile(args: argparse.Namespace, pid: int) -> asyncio.subprocess.Process | None:
    """py-spy recording the server through the first QaaS run (raw collapsed stacks)."""
    if args.profile is None:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    return await asyncio.create_subprocess_exec(
        str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
        "--duration", str(args.seconds), "--output", str(args.profile), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> str:
    token = await populate(workdir, args.networks, args.nodes)
    headers = {"Authorization": f"Bearer {token}"}
    server, port = start_server(workdir, kubeconfig)
    reference, ref_port = start_reference(args.networks, args.nodes)
    qaas_url, ref_url = f"http://{HOST}:{port}/graphql", f"http://{HOST}:{ref_port}/graphql"
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    if not configuration.host.startswith(("https://127.0.0.1:", "http://127.0.0.1:")):
        raise RuntimeError(f"the sandbox's apiserver is not on 127.0.0.1: {configuration.host}")
    try:
        running = await settled(qaas_url, headers, args.networks * args.nodes)
        await answering(ref_url, {}, LIST)
        log(f"{running} nodes RUNNING, the others settled; measuring")
        qaas, ref, made, spent = [], [], 0, 0.0
        async with client.ApiClient(configuration) as api:
            for index in range(args.rounds):
                stream, stop_at = ChangeStream(api, args.changes), asyncio.Event()
                changing = asyncio.create_task(stream.run(stop_at))
                spy = await profile(args, server.pid) if index == 0 else None
                started = time.monotonic()
                try:
                    qaas.append(await wrk(qaas_url, headers, args, workdir))
                finally:
                    stop_at.set()
                    await changing
                    if spy is not None:
                        await spy.wait()
                spent += time.monotonic() - started
                made += stream.made
                ref.append(await wrk(ref_url, {}, args, workdir))
                log(f"round {index + 1}: QaaS {qaas[-1]:.0f} req/s, reference {ref[-1]:.0f}")
    finally:
        for proc in (server, reference):
            await asyncio.to_thread(stop, proc, 15.0)
    mine, theirs = statistics.median(qaas), statistics.median(ref)
    return (
        f"polled list ({args.networks} networks x {args.nodes} nodes, {running} of them RUNNING, "
        f"{args.connections} "
        f"connections, {os.cpu_count()} cores): QaaS with cache {mine:.0f} req/s under "
        f"{made / spent:.1f} changes/s ({made} changes) | reference {theirs:.0f} req/s | "
        f"ratio {mine / theirs:.2f} | goal >= 5"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=4, help="per network, coordinator included")
    parser.add_argument("--changes", type=float, default=10.0, help="pod status changes per s")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="overall bound, seconds")
    parser.add_argument(
        "--profile", type=Path, default=None,
        help="record the server with py-spy during the first QaaS run into this file (raw "
        "collapsed stacks); the sampling slows the server, so that run's figure is not one",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2

    line = bounded_with_sandbox(
        "qaas-polled-",
        args.timeout,
        log,
        lambda workdir, kubeconfig: bench(args, workdir, kubeconfig),
    )
    if line is None:
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
