"""kill -9 benchmark: many trials of the chaos harness, on one database, optionally with faults.

What it does
    Starts a local Kubernetes sandbox (in a temporary folder, tied to this process), a namespace
    for the tenant and a fresh database (a SQLite file, or a PostgreSQL database made on the
    server of ``--postgres-url`` and dropped at the end), then runs ``tests/faults/chaos.py``:
    per trial, a burst of concurrent mutations from one user (create 3 networks, add 2 peers to
    each, delete one of them and every network of the trial before), a SIGKILL of ``qaas serve``
    at a random moment within ``--kill-window`` seconds of the burst (seeded), a restart, and a
    bounded wait until the cluster, the database and the API agree. ``--faults`` also puts the
    fault proxy (``tests/faults/proxy.py``) between the server and the apiserver, with the mix
    of ``tests/faults/chaos_faults.default_rules``.

How to read the figures
    kills            SIGKILLs sent (one per trial)
    mutations        sent (an answer was awaited) / accepted (no error, no userError); per kind:
                     lost = in flight when the server died (outcome unknown), skipped = due
                     after the kill, rejected = userErrors (e.g. NOT_FOUND for a nodeAdd to a
                     network whose create was lost)
    convergence      restart of the server to the first snapshot where every rule holds
                     (``/readyz`` included), p50 / max over the trials that converged
    pods judged      how often the ready-pod and the unschedulable-pod rules were applied
    faults injected  by kind, as the proxy counted them
    disagreements    every rule broken at the end of a trial's bounded wait, with details

Usage::

    python bench/chaos.py --trials 100 --database sqlite|postgresql [--faults] [--seed 1]

Exits 1 if any disagreement was found (or the harness crashed: the figures so far are
printed), 2 if the run did not finish within ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from kubernetes_asyncio import client, config

# The harness lives in tests/ (not an installed package). Appended, not prepended: a PYTHONPATH
# naming another copy of app/ (e.g. a `git archive` of a commit) still wins, here and in the
# server processes, which inherit the environment.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from app.sandbox.handle import Sandbox
from tests.conftest import empty_database
from tests.faults.chaos import ChaosConfig, ChaosReport, run_chaos
from tests.faults.chaos_faults import default_rules
from tests.helpers import eventually

POSTGRES_URL = os.environ.get(
    "QAAS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def namespace_for(kubeconfig: Path) -> str:
    """A namespace for the tenant, once its default ServiceAccount can hold pods."""
    configuration = client.Configuration()
    await config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        await core.create_namespace({"metadata": {"name": name}})

        async def default_service_account() -> bool:
            accounts = await core.list_namespaced_service_account(name)
            return any(a.metadata.name == "default" and a.secrets for a in accounts.items)

        await eventually(default_service_account, within=60, every=0.2)
    return name


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> ChaosReport:
    namespace = await namespace_for(kubeconfig)
    async with empty_database(args.database, workdir, args.postgres_url) as url:
        return await run_chaos(
            ChaosConfig(
                kubeconfig=kubeconfig, database_url=url, namespace=namespace, workdir=workdir,
                trials=args.trials, seed=args.seed, kill_window=args.kill_window,
                converge_within=args.converge_within, room=args.room if args.room >= 0 else None,
                faults=default_rules() if args.faults else None, progress=log,
                time_budget=args.timeout - 120,  # leaves room for the last trial and teardown
            )
        )  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--faults", action="store_true", help="run the server through the proxy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-window", type=float, default=3.0, help="seconds")
    parser.add_argument("--converge-within", type=float, default=60.0, help="seconds, per trial")
    parser.add_argument("--room", type=int, default=5,
                        help="node pods the cluster can place (-1: no limit)")  # fmt: skip
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="an admin URL")
    parser.add_argument("--timeout", type=float, default=3600.0, help="overall bound, seconds")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy the server's log (all its runs) into this folder")  # fmt: skip
    args = parser.parse_args(argv)
    if args.trials < 1 or args.timeout < 300:
        parser.error("--trials must be positive and --timeout at least 300")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Each SIGKILL drops the server's connections to the fault proxy mid-answer; aiohttp logs
    # every one with a traceback. Expected here, and counted nowhere else: keep them quiet.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark did not finish within {args.timeout:.0f}s")

    signal.signal(signal.SIGALRM, out_of_time)  # a backstop for the blocking parts
    signal.alarm(int(args.timeout) + 60)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="qaas-chaos-") as tmp:
            workdir = Path(tmp)
            sandbox = Sandbox(workdir / "sandbox")
            try:
                state = sandbox.up(progress=log, detach=False, runtime="simulated", timeout=180)
                left = args.timeout - (time.monotonic() - started)

                async def bounded() -> ChaosReport:
                    async with asyncio.timeout(left):
                        return await bench(args, workdir, state.kubeconfig)

                report = asyncio.run(bounded())
            finally:
                if args.keep is not None and (workdir / "server.log").exists():
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(workdir / "server.log", args.keep / "server.log")
                log("stopping the sandbox")
                sandbox.down()
    except TimeoutError:
        print(f"the benchmark did not finish within {args.timeout:.0f}s", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    if args.keep is not None:
        report.server_log = args.keep / "server.log"
    else:
        report.server_log = None  # it was in the temporary folder
    faults = "fault proxy (default rules)" if args.faults else "no fault proxy"
    print(
        f"\nkill -9 chaos: database {args.database}, {faults}, seed {args.seed}, "
        f"kill window {args.kill_window:g}s, room {args.room}, {os.cpu_count()} cores, "
        f"{time.monotonic() - started:.0f}s in all"
    )
    print(report.table())
    return 1 if report.disagreements or report.crashed else 0


if __name__ == "__main__":
    sys.exit(main())
