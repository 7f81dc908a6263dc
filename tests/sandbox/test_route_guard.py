"""No sandbox address leaves the machine: while a sandbox runs, its pod, Service and node ranges
are unreachable on the host instead of routed to the default gateway; the last sandbox to stop
removes the routes, and a holder that died does not keep them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.sandbox.handle import SandboxState
from app.sandbox.routes import RouteGuard

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="routes need root")


def _route(address: str) -> str:
    """What the host would do with a packet to ``address`` (error text included)."""
    done = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip()


def _default_device() -> str | None:
    words = subprocess.run(["ip", "route", "show", "default"], capture_output=True,
                           text=True).stdout.split()  # fmt: skip
    return words[words.index("dev") + 1] if "dev" in words else None


@pytest.mark.parametrize("address", ["10.244.0.5", "10.244.3.7", "10.96.0.1", "172.30.0.10"])
def test_the_sandbox_ranges_never_take_the_default_route(
    sandbox: SandboxState, address: str
) -> None:
    route = _route(address)
    assert " via " not in route, route
    device = _default_device()
    if device is not None:
        assert f"dev {device}" not in route, route
    assert "unreachable" in route or "No route to host" in route, route


def test_the_last_holder_removes_the_routes(tmp_path: Path) -> None:
    cidr = "10.255.254.0/24"  # a test range of its own: the session sandbox's stay untouched
    first = RouteGuard([cidr], tmp_path, holder=os.getpid())
    gone = subprocess.Popen(["true"])
    gone.wait()
    crashed = RouteGuard([cidr], tmp_path, holder=gone.pid)
    crashed.hold()  # a sandbox that will never release (as if killed)
    first.hold()
    assert "No route to host" in _route("10.255.254.1")
    second = RouteGuard([cidr], tmp_path, holder=os.getppid())  # alive: our parent
    second.hold()
    second.release()
    assert "No route to host" in _route("10.255.254.1"), "another holder is still alive"
    first.release()  # the crashed holder's entry is dead: the routes go
    assert "No route to host" not in _route("10.255.254.1")
    assert list(tmp_path.iterdir()) == []
