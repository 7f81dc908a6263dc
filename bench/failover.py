"""Failover benchmark: kill -9 the leader of two ``qaas serve`` processes, ``--kills`` times.

    Starts a local Kubernetes sandbox (simulated pods, in a temporary folder, tied to this
    process), a namespace and a fresh PostgreSQL database, then two servers on them with leader
    election on. Each kill: a ``networkCreate`` sent to the leader, SIGKILL at once, the time
    until the Lease names the survivor (the takeover) and until the survivor has created that
    network's StatefulSet (the pending work). The killed server is restarted as a follower, so
    the roles alternate. Prints p50 and max of both against the lease duration, which bounds
    the takeover from below (a lease nobody released must expire first) and, plus two retry
    periods, from above. The whole run is bounded by ``--timeout``.

    python bench/failover.py [--kills 10] [--lease 4] [--timeout 600]

The harness is ``tests/faults/failover.py`` (also run once by tests/faults/test_failover.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.chaos import POSTGRES_URL, log, namespace_for
from bench.harness import bounded_with_sandbox
from tests.conftest import empty_database
from tests.faults.failover import FailoverConfig, FailoverReport, run_failover


async def bench(args: argparse.Namespace, workdir: Path, kubeconfig: Path) -> FailoverReport:
    namespace = await namespace_for(kubeconfig)
    async with empty_database("postgresql", workdir, args.postgres_url) as url:
        return await run_failover(
            FailoverConfig(
                kubeconfig, url, namespace, workdir, kills=args.kills,
                lease_seconds=args.lease, renew_deadline=args.lease * 0.75,
                retry_period=args.lease / 4, progress=log,
            )
        )  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=4.0, help="QAAS_LEASE_SECONDS (>= 4)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="an admin URL")
    parser.add_argument("--timeout", type=float, default=600.0, help="overall bound, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report = bounded_with_sandbox(
        "qaas-failover-", args.timeout, log, lambda workdir, kube: bench(args, workdir, kube)
    )
    if report is None:
        return 2
    retry = args.lease / 4
    took = time.monotonic() - started
    print(f"\nfailover: {len(report.takeovers)} kills, lease {args.lease:g}s (renew deadline "
          f"{args.lease * 0.75:g}s, retry {retry:g}s), {took:.0f}s in all")  # fmt: skip
    rows = (("takeover", report.takeovers), ("pending work", report.pending_done),
            ("subscriber", report.survivor_saw))  # fmt: skip
    for label, figures in rows:
        p50, worst = statistics.median(figures), max(figures)
        print(f"  {label:<13} p50 {p50:6.2f}s  max {worst:6.2f}s   reference: the lease, "
              f"{args.lease:g}s (+ {2 * retry:g}s of retries)")  # fmt: skip
    late = [t for t in report.takeovers if t > args.lease + 2.5 * retry]
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
