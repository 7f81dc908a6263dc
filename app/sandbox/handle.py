"""`Sandbox`: start, find and stop a sandbox from another process (the CLI, `qaas serve`, pytest).

A sandbox lives in a folder (default ``$XDG_STATE_HOME/qaas/sandbox``, i.e.
``~/.local/state/qaas/sandbox``). Its supervisor process writes ``state.json`` there; the handle
reads it, so any process can tell whether a sandbox runs and where its kubeconfig is.

Example::

    sandbox = Sandbox.default()
    state = sandbox.up(progress=print)         # builds on first use, returns when ready
    state.kubeconfig
    sandbox.down()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.sandbox.build import ensure_binaries
from app.sandbox.errors import SandboxError
from app.sandbox.processes import pid_alive, spawn, stop, wait_gone
from app.sandbox.supervisor import STATE_FILE


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qaas" / "sandbox"


@dataclass(frozen=True)
class SandboxState:
    status: str
    supervisor_pid: int
    raw: dict[str, Any]

    @property
    def kubeconfig(self) -> Path:
        return Path(self.raw["kubeconfig"])

    @property
    def server(self) -> str:
        return str(self.raw.get("server", ""))

    @property
    def etcd(self) -> str:
        return str(self.raw.get("etcd", ""))

    def compact(self) -> int:
        """Compact etcd to its current revision: every older resourceVersion expires (410).

        For tests of watch expiry. Returns the revision compacted to.
        """

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(
                f"{self.etcd}/v3/kv/{path}", data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result

        revision = int(post("range", {"key": "AA=="})["header"]["revision"])
        post("compaction", {"revision": str(revision), "physical": True})
        return revision

    @property
    def pids(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.raw.get("pids", {}).items()}


class Sandbox:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._proc: subprocess.Popen[bytes] | None = None  # a supervisor we started and own

    @classmethod
    def default(cls) -> Sandbox:
        return cls(default_state_dir())

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "supervisor.log"

    def state(self) -> SandboxState | None:
        """The sandbox's state if its supervisor still runs, else None."""
        try:
            raw = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        pid = int(raw.get("supervisor_pid", 0))
        if not pid or not pid_alive(pid) or raw.get("status") in ("stopped", "failed"):
            return None
        return SandboxState(str(raw["status"]), pid, raw)

    def up(
        self,
        progress: Callable[[str], None] = print,
        *,
        detach: bool = True,
        nodes: int = 1,
        runtime: str = "process",
        max_process_pods: int = 16,
        timeout: float = 120.0,
    ) -> SandboxState:
        """Start the sandbox (building first if needed) and return once it is ready.

        ``detach=True`` leaves it running after this process exits (``qaas sandbox up``);
        ``detach=False`` ties it to this process: it dies when we die (tests, ``qaas serve``).
        A sandbox that already runs in this folder is reused. ``runtime`` is what pods of the
        image table run as unless they or their namespace say (``process`` or ``simulated``,
        see `app.sandbox.images`).
        """
        current = self.state()
        if current is not None and current.status == "ready":
            progress(f"sandbox already running at {current.server}")
            return current
        if current is not None:
            self.down()
        if self._proc is not None:
            # A supervisor of ours that died (kill -9) or is still dying: its pid reads as a
            # zombie while its other threads exit, and poll() does not reap it until they have.
            stop(self._proc)
            self._proc = None
        ensure_binaries(progress)
        started = time.monotonic()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "app.sandbox.supervisor",
            str(self.state_dir),
            f"--nodes={nodes}",
            f"--runtime={runtime}",
            f"--max-process-pods={max_process_pods}",
        ]
        if detach:
            with self.log.open("ab") as out:
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the terminal must not reach it later
                )  # fmt: skip
        else:
            proc = spawn(command, self.log)
        self._proc = proc
        progress("starting etcd, kube-apiserver, controller-manager, scheduler, kubelet")
        try:
            return self._wait_ready(proc, started, timeout, progress)
        except BaseException:
            _terminate(proc.pid)
            proc.wait()
            raise

    def _wait_ready(
        self,
        proc: subprocess.Popen[bytes],
        started: float,
        timeout: float,
        progress: Callable[[str], None],
    ) -> SandboxState:
        deadline = started + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None and state.status == "ready":
                progress(f"sandbox ready in {time.monotonic() - started:.1f}s at {state.server}")
                return state
            if proc.poll() is not None:
                raise SandboxError(f"the sandbox exited during start-up: {self._log_tail()}")
            time.sleep(0.1)
        raise SandboxError(f"the sandbox was not ready within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            lines = []
        return " / ".join(lines) + f" (log: {self.log})"

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the sandbox; True if one was running. Waits until every process is gone."""
        try:
            return self._stop(timeout)
        finally:
            if self._proc is not None:
                self._proc.wait()  # reap our own child, whatever state.json said
                self._proc = None

    def _stop(self, timeout: float) -> bool:
        try:
            raw = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return False
        pid = int(raw.get("supervisor_pid", 0))
        children = [int(p) for p in raw.get("pids", {}).values()]
        was_running = bool(pid) and pid_alive(pid)
        if was_running:
            _terminate(pid)
            if not wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
        # The kernel kills the children when the supervisor dies; make sure, by pid.
        for child in children:
            if pid_alive(child):
                os.kill(child, signal.SIGKILL)
                wait_gone(child, 5)
        return was_running


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
