"""Startup, liveness and readiness probes of a process container, run as a kubelet runs them.

One `Prober` per probe: it waits ``initialDelaySeconds``, then checks every ``periodSeconds``
with a ``timeoutSeconds`` limit, and reports a new result only after ``failureThreshold``
failures in a row or ``successThreshold`` successes in a row (Kubernetes' defaults: 10 s, 1 s,
3 and 1). The checks:

- ``tcpSocket``: a TCP connect to the pod IP (or ``host``) and port succeeds.
- ``httpGet``: an HTTP GET (scheme HTTP) to ``host`` (default the pod IP), ``port`` (a number or a
  container port's name) and ``path`` answers 200-399.
- ``exec``: the command, run like the container (its env, working directory and network
  namespace), exits 0.

Network safety: a probe only dials the pod IP, the node IP or loopback; any other ``host`` fails
the probe without a packet being sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.sandbox.podenv import signal_group, spawn

log = logging.getLogger(__name__)
DEFAULTS = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "failureThreshold": 3,
    "successThreshold": 1,
}


@dataclass(frozen=True)
class ProbeTarget:
    """Where a container's probes go and how its exec probes run."""

    pod_ip: str
    node_ip: str
    ports: Mapping[str, int]  # the container's named ports
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = Path("/")
    netns: str | None = None

    def allowed(self, host: str) -> bool:
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or host in (self.pod_ip, self.node_ip)

    def port(self, value: int | str) -> int:
        if isinstance(value, int) or value.isdigit():
            return int(value)
        if value not in self.ports:
            raise ValueError(f"no container port named {value!r}")
        return self.ports[value]


async def _tcp(spec: dict[str, Any], target: ProbeTarget) -> str | None:
    host = spec.get("host") or target.pod_ip
    if not target.allowed(host):
        return f"probe host {host} is outside the sandbox"
    _, writer = await asyncio.open_connection(host, target.port(spec["port"]))
    writer.close()
    return None


async def _http(spec: dict[str, Any], target: ProbeTarget) -> str | None:
    host = spec.get("host") or target.pod_ip
    if not target.allowed(host):
        return f"probe host {host} is outside the sandbox"
    if (spec.get("scheme") or "HTTP").upper() != "HTTP":
        return "only scheme HTTP is supported in the sandbox"
    port = target.port(spec["port"])
    path = spec.get("path") or "/"
    headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in spec.get("httpHeaders") or [])
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.20\r\n"
            f"Accept: */*\r\n{headers}Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return f"malformed HTTP answer {status_line[:80]!r}"
    code = int(parts[1])
    return None if 200 <= code < 400 else f"HTTP probe failed with statuscode: {code}"


async def _exec(spec: dict[str, Any], target: ProbeTarget) -> str | None:
    proc = await spawn(
        list(spec.get("command") or []),
        env=target.env,
        cwd=target.cwd,
        netns=target.netns,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        code = await proc.wait()
    except BaseException:  # the timeout (or a cancel): the probe's process goes too
        signal_group(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        raise
    return None if code == 0 else f"command exited with {code}"


async def check(probe: dict[str, Any], target: ProbeTarget) -> str | None:
    """Run ``probe`` once: None on success, else why it failed."""
    timeout = float(probe.get("timeoutSeconds") or DEFAULTS["timeoutSeconds"])
    if "tcpSocket" in probe:
        action = _tcp(probe["tcpSocket"], target)
    elif "httpGet" in probe:
        action = _http(probe["httpGet"], target)
    elif "exec" in probe:
        action = _exec(probe["exec"], target)
    else:
        return "probe has no tcpSocket, httpGet or exec handler"
    try:
        return await asyncio.wait_for(action, timeout)
    except TimeoutError:
        return f"timeout after {timeout:g}s"
    except (OSError, ValueError) as error:
        return str(error) or type(error).__name__


class Prober:
    """Runs one probe until cancelled; ``on_result(ok, message)`` on every change of result."""

    def __init__(
        self,
        kind: str,
        probe: dict[str, Any],
        target: ProbeTarget,
        on_result: Callable[[bool, str], None],
    ) -> None:
        self.kind = kind
        self.probe = {**DEFAULTS, **{k: v for k, v in probe.items() if v is not None}}
        self.target = target
        self.on_result = on_result
        self.result: bool | None = None

    async def run(self) -> None:
        await asyncio.sleep(float(self.probe["initialDelaySeconds"]))
        successes = failures = 0
        while True:
            problem = await check(self.probe, self.target)
            if problem is None:
                successes, failures = successes + 1, 0
                if self.result is not True and successes >= int(self.probe["successThreshold"]):
                    self.result = True
                    self.on_result(True, "")
            else:
                successes, failures = 0, failures + 1
                log.debug("%s probe failed: %s", self.kind, problem)
                if self.result is not False and failures >= int(self.probe["failureThreshold"]):
                    self.result = False
                    self.on_result(False, f"{self.kind.capitalize()} probe failed: {problem}")
            await asyncio.sleep(float(self.probe["periodSeconds"]))
