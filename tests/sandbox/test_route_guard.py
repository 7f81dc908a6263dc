"""No sandbox address leaves the machine: while a sandbox runs, the pod, Service and node ranges of
every slot are unreachable on the host instead of routed to the default gateway, except the
running sandbox's own slot, which leads to its own bridge; the last sandbox to stop removes the
routes, and a holder that died does not keep them."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from app.sandbox.handle import SandboxState
from app.sandbox.routes import GUARDED_RANGES, RouteGuard
from app.sandbox.slots import SLOTS, Slot, holder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="routes need root")


def _route(address: str) -> str:
    """What the host would do with a packet to ``address`` (error text included)."""
    done = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip()


def _default_device() -> str | None:
    words = subprocess.run(["ip", "route", "show", "default"], capture_output=True,
                           text=True).stdout.split()  # fmt: skip
    return words[words.index("dev") + 1] if "dev" in words else None


def _addresses(sandbox: SandboxState) -> dict[str, str]:
    """An address of each range: the sandbox's own slot's and a slot nobody holds."""
    own = Slot(int(sandbox.raw["slot"]))
    free = next(Slot(i) for i in range(SLOTS) if holder(Slot(i)) is None)
    return {
        "own pod": own.node_cidr(3).replace(".0/24", ".7"),
        "own Service": own.kubernetes_service_ip,
        "own node": own.node_ip(0),
        "other pod": free.node_cidr(0).replace(".0/24", ".5"),
        "other Service": free.kubernetes_service_ip,
        "other node": free.node_ip(0),
        "stray node": "172.30.200.10",  # in no slot at all
    }


@pytest.mark.parametrize(
    "kind", ["own pod", "own Service", "own node", "other pod", "other Service", "other node",
             "stray node"],
)  # fmt: skip
def test_the_sandbox_ranges_never_take_the_default_route(sandbox: SandboxState, kind: str) -> None:
    route = _route(_addresses(sandbox)[kind])
    assert " via " not in route, route
    device = _default_device()
    if device is not None:
        assert f"dev {device}" not in route, route
    if kind.startswith("own"):  # the sandbox's own bridge, or the host itself (its node IPs)
        bridge = str(sandbox.raw["bridge"])
        assert f"dev {bridge}" in route or route.startswith("local "), route
    else:
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


def test_the_guard_covers_every_slot() -> None:
    """The guarded ranges hold every slot's pod, Service and node ranges (routes are shared by
    all sandboxes on the host, so the test above cannot tell whose guard it sees)."""
    guarded = [ipaddress.IPv4Network(cidr) for cidr in GUARDED_RANGES]
    for index in range(SLOTS):
        slot = Slot(index)
        for cidr in (slot.pod_cidr, slot.service_cidr, slot.node_range):
            network = ipaddress.IPv4Network(cidr)
            assert any(network.subnet_of(outer) for outer in guarded), cidr
