"""`qaas serve` as a real child process, for the kill -9 harness: started, SIGKILLed, restarted.

The server runs as a user would run it (``.venv/bin/qaas serve --host 127.0.0.1 --port P``)
against a given kubeconfig and database, with the variables the harness needs; its ADMIN token
comes from ``qaas token create`` beforehand, as an operator would make it.

Example::

    token = await create_admin_token(environment(url, kubeconfig, "ns"), workdir)
    server = ServerProcess(env, workdir / "server.log", workdir)
    server.start()
    await server.wait_ready()
    server.kill9()
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.sandbox.processes import _die_with_parent, free_ports

HOST = "127.0.0.1"
QAAS = Path(sys.executable).with_name("qaas")


@dataclass(frozen=True)
class KubeAccess:
    """What a kubeconfig names: the apiserver's URL, its CA file and the bearer token."""

    server: str
    ca_file: Path
    token: str

    @classmethod
    def of(cls, kubeconfig: Path) -> KubeAccess:
        config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
        current = config.get("current-context")
        context = next(c for c in config["contexts"] if c["name"] == current)["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u for u in config["users"] if u["name"] == context["user"])
        return cls(
            server=str(cluster["cluster"]["server"]),
            ca_file=Path(cluster["cluster"]["certificate-authority"]),
            token=str(user["user"]["token"]),
        )


def environment(
    database_url: str,
    kubeconfig: Path,
    namespace: str,
    resync_seconds: float = 2.0,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The server's environment: this process's, minus any QAAS_* of ours, plus the harness's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("QAAS_")}
    return {
        **base,
        "QAAS_DATABASE_URL": database_url,
        "QAAS_CLUSTER": "kubeconfig",
        "QAAS_KUBECONFIG": str(kubeconfig),
        "QAAS_NAMESPACE": namespace,
        "QAAS_RESYNC_SECONDS": str(resync_seconds),
        "QAAS_PRODUCTION": "false",
        # Unschedulable pods must stay PENDING for the whole run, not fail at a deadline.
        "QAAS_NODE_START_DEADLINE": "3600",
        # The harness is one busy user: the limits are not what is under test.
        "QAAS_MUTATIONS_PER_MINUTE": "100000",
        "QAAS_MUTATION_BURST": "10000",
        "QAAS_TENANT_MAX_NETWORKS": "1000",
        "QAAS_TENANT_MAX_NODES": "5000",
        "QAAS_CHAIN_PROBE": "off",  # the sandbox simulates these pods: no chain answers
        **(extra or {}),
    }


async def create_admin_token(env: dict[str, str], workdir: Path, tenant: str = "local") -> str:
    """``qaas token create --tenant TENANT --create-tenant --role admin``; the token is its last
    line."""
    proc = await asyncio.create_subprocess_exec(
        str(QAAS), "token", "create", "--tenant", tenant, "--create-tenant", "--role", "admin",
        "--name", "chaos",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=workdir,  # cwd: no stray .env file
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"qaas token create failed ({proc.returncode}): {err.decode()[-500:]}")
    lines = out.decode().strip().splitlines()
    if not lines or not lines[-1].startswith("qaas_"):
        raise RuntimeError(f"qaas token create printed no token: {out.decode()[-500:]}")
    return lines[-1].strip()


class StartupFailed(RuntimeError):
    """The server process exited before it was ready; ``reason`` is its last log line."""

    def __init__(self, reason: str, tail: str) -> None:
        super().__init__(f"the server exited during start-up: {reason}{tail}")
        self.reason = reason


class ServerProcess:
    """One ``qaas serve`` at a time; ``start`` after ``kill9`` runs a new one on a new port."""

    def __init__(self, env: dict[str, str], log_path: Path, workdir: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            raise RuntimeError("the server is already running")
        self.port = free_ports(1)[0]
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {self.starts} on port {self.port} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [str(QAAS), "serve", "--host", HOST, "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.workdir, preexec_fn=_die_with_parent,  # never outlives the harness
            )  # fmt: skip

    async def wait_ready(self, within: float = 60.0) -> float:
        """Poll /readyz until 200; returns the seconds it took. Fails if the process exits."""
        started = time.monotonic()
        deadline = started + within
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not self.alive:
                    tail = self.log_tail()
                    raise StartupFailed(tail.strip().splitlines()[-1].strip(), tail)
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass  # not listening yet
                await asyncio.sleep(0.1)
        raise RuntimeError(f"no /readyz 200 within {within:.0f}s:{self.log_tail()}")

    def kill9(self) -> bool:
        """SIGKILL the server now (no cleanup runs in it); False if it was not running."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1
        with self.log_path.open("ab") as out:
            out.write(b"\n===== SIGKILL =====\n")
        return True

    def stop(self) -> None:
        """A graceful stop at the end of a run (SIGTERM, then SIGKILL after 15 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return " (no log)"
        return "\n  " + "\n  ".join(text.strip().splitlines()[-lines:])
