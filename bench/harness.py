"""What the benchmarks that need a cluster do around their measurement.

``bounded_with_sandbox`` gives the measurement a temporary folder and a sandbox of simulated
pods tied to this process (they measure QaaS, not Ethereum nodes), and bounds the whole run:
the measurement is cancelled when ``timeout`` seconds have passed since the start, and a
SIGALRM a little later stops the blocking parts (the sandbox's start and stop). It returns the
measurement's result, or None once it has said on stderr that the time ran out.

Example::

    figures = bounded_with_sandbox("qaas-list-", args.timeout, log,
                                   lambda workdir, kubeconfig: bench(args, workdir, kubeconfig))
    if figures is None:
        return 2
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from app.sandbox.handle import Sandbox

T = TypeVar("T")
BACKSTOP_SECONDS = 30  # after the timeout: for a sandbox that does not start or stop


def bounded_with_sandbox(
    prefix: str,
    timeout: float,
    log: Callable[[str], None],
    measure: Callable[[Path, Path], Coroutine[Any, Any, T]],
    cluster_cores: set[int] | None = None,
) -> T | None:
    """Run ``measure(workdir, kubeconfig)`` within ``timeout`` seconds (see the module).
    With ``cluster_cores`` the sandbox's processes (etcd, the apiserver, the controllers and
    the kubelet) run on those cores only, under ``SCHED_IDLE``: a cluster is elsewhere in
    production, and a benchmark that measures QaaS on one core and its load on the other
    keeps them off the first. They still delay what wakes on their core while they work
    (bench/mutations.py logs its load's own lag; docs/performance.md says what was found)."""

    def out_of_time(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(timeout) + BACKSTOP_SECONDS)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            workdir = Path(tmp)
            sandbox = Sandbox(workdir / "sandbox")
            try:
                cores = os.sched_getaffinity(0)
                if cluster_cores:  # inherited by the sandbox's processes and their threads
                    os.sched_setaffinity(0, cluster_cores)
                    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
                try:
                    state = sandbox.up(progress=log, detach=False, runtime="simulated", timeout=120)
                finally:
                    os.sched_setaffinity(0, cores)
                    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                left = timeout - (time.monotonic() - started)

                async def bounded() -> T:
                    async with asyncio.timeout(left):
                        return await measure(workdir, state.kubeconfig)

                return asyncio.run(bounded())
            finally:
                log("stopping the sandbox")
                sandbox.down()
    except TimeoutError:
        print(f"the benchmark did not finish within {timeout:.0f}s", file=sys.stderr)
        return None
    finally:
        signal.alarm(0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
