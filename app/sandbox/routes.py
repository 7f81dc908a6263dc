"""Keep the sandbox's address ranges on this machine: no packet to a pod, Service or node address
of the sandbox may follow the default route off the machine.

The ranges of all sandbox slots (pods 10.244.0.0/16, Services 10.96.0.0/16, node InternalIPs
172.30.0.0/16; see `app.sandbox.slots`) are not routed anywhere on a normal host, so a process
dialling one of them would send it to the default gateway. While any sandbox runs, each range gets
an ``unreachable`` route on the host: dialling fails at once, locally. A running sandbox's own
slot is more specific and wins: its bridge's connected routes and its Service route (see
`app.sandbox.podnet`) lead to its own pods, never off the machine.

Every running sandbox registers itself (a file named by its supervisor's pid in
``/run/qaas-sandbox/holders``); the routes are made (again) by every start, so they come back
after a crash, and removed when the last sandbox alive stops.

Example::

    guard = RouteGuard()
    guard.hold()       # before the control plane starts
    ...
    guard.release()    # removes the routes if no other sandbox holds them
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from app.sandbox.processes import pid_alive
from app.sandbox.slots import NODE_RANGE, POD_RANGE, SERVICE_RANGE

log = logging.getLogger("qaas.sandbox")

GUARDED_RANGES = (POD_RANGE, SERVICE_RANGE, NODE_RANGE)
REGISTRY = Path("/run/qaas-sandbox/holders")


class RouteGuard:
    def __init__(
        self,
        ranges: Sequence[str] = GUARDED_RANGES,
        registry: Path = REGISTRY,
        holder: int | None = None,
    ) -> None:
        self.ranges = tuple(ranges)
        self.registry = registry
        self.holder = holder if holder is not None else os.getpid()
        self.active = False

    def hold(self) -> None:
        """Register this sandbox and make every range unreachable on the host."""
        if os.geteuid() != 0 or shutil.which("ip") is None:
            log.warning(
                "cannot guard the sandbox's address ranges %s (needs root and `ip`): a process "
                "dialling one of them would reach the default gateway", ", ".join(self.ranges)
            )  # fmt: skip
            return
        self.registry.mkdir(parents=True, exist_ok=True)
        (self.registry / str(self.holder)).write_text(f"{self.holder}\n")
        self.active = True
        for cidr in self.ranges:
            try:
                _ip("route", "replace", "unreachable", cidr)
            except subprocess.CalledProcessError as error:  # e.g. no CAP_NET_ADMIN
                log.warning("cannot make %s unreachable on this host: %s", cidr,
                            error.stderr.decode(errors="replace").strip())  # fmt: skip

    def release(self) -> None:
        """Unregister; remove the routes if no sandbox still alive holds them."""
        if not self.active:
            return
        (self.registry / str(self.holder)).unlink(missing_ok=True)
        self.active = False
        if self.holders():
            return
        for cidr in self.ranges:
            _ip("route", "del", "unreachable", cidr, check=False)

    def holders(self) -> list[int]:
        """The sandboxes alive that hold the guard (entries of dead ones are removed)."""
        alive = []
        for entry in self.registry.glob("*") if self.registry.is_dir() else []:
            pid = int(entry.name) if entry.name.isdigit() else -1
            if pid > 0 and pid_alive(pid):
                alive.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return alive


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)
