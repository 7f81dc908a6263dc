"""Pod networking: a pod's namespace reaches the pod and Service ranges and nothing else, a process
in it answers at podIP:port from the host and from other pods, the host never forwards between the
bridge and another interface, and nothing of a slot outlives its sandbox (down, or kill -9 then
up). Root only; every packet stays in namespaces these tests (or their sandboxes) created."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.sandbox.handle import Sandbox, SandboxState
from app.sandbox.podenv import netns_preexec
from app.sandbox.podnet import Attachment, PodNetwork, unavailable
from app.sandbox.processes import wait_gone
from app.sandbox.slots import Slot, claim, held, leftovers, release
from tests.helpers import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pod networking needs root")

# Prints the body of GET /who at ARGV[1]:ARGV[2], or the error's class and errno name.
FETCH = """
import errno, socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as sock:
        sock.sendall(b"GET /who HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    print(data.split(b"\\r\\n\\r\\n", 1)[1].decode().strip())
except OSError as error:
    print(type(error).__name__, errno.errorcode.get(error.errno or 0, ""))
"""


def in_pod(netns: str | None, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``netns`` (on the host if None)."""
    command = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    return subprocess.run(command, capture_output=True, text=True, timeout=20)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def fetch(ip: str, port: int, netns: str | None = None) -> str:
    """GET http://ip:port/who from ``netns`` (the host if None): the body or the error."""
    return in_pod(netns, sys.executable, "-c", FETCH, ip, str(port)).stdout.strip()


async def answers(ip: str, port: int, netns: str | None, expected: str, within: float = 10) -> None:
    async def probe() -> str | None:
        got = await asyncio.to_thread(fetch, ip, port, netns)
        return got if got == expected else None

    await eventually(probe, within=within)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def serve_http(pod: Attachment, port: int, body: str, folder: Path) -> Server:
    """python3 -m http.server in the pod's namespace, answering ``body`` at /who."""
    root = folder / f"{pod.netns}-{port}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "who").write_text(body)
    command = [sys.executable, "-m", "http.server", str(port), "--bind", pod.ip,
               "--directory", str(root)]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=netns_preexec(pod.netns),
    )
    return Server(proc)


def counter(table: str, chain: str, comment: str) -> int:
    """The packet counter of the rule of ``chain`` carrying ``comment``."""
    listing = subprocess.run(["nft", "list", "chain", "ip", table, chain], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    line = next(line for line in listing.splitlines() if f'comment "{comment}"' in line)
    words = line.split()
    return int(words[words.index("packets") + 1])


def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
async def network(sandbox: SandboxState) -> AsyncIterator[PodNetwork]:
    """A pod network on a slot of its own (the session sandbox holds the route guard)."""
    slot = claim()
    network = PodNetwork(slot)
    try:
        await network.setup()
        yield network
    finally:
        await network.teardown()
        release(slot)
    assert leftovers(slot) == []


@pytest.fixture(scope="module")
async def pods(network: PodNetwork) -> AsyncIterator[tuple[Attachment, Attachment]]:
    node = network.slot.node_cidr(0)
    first, second = uid(), uid()
    yield await network.attach(first, node), await network.attach(second, node)
    await network.release(first)
    await network.release(second)


async def test_a_pod_reaches_its_ranges_and_nothing_else(
    network: PodNetwork, pods: tuple[Attachment, Attachment]
) -> None:
    a, b = pods
    slot = network.slot
    routes = in_pod(a.netns, "ip", "route", "show").stdout.splitlines()
    assert sorted(line.split()[0] for line in routes) == sorted([slot.service_cidr, slot.pod_cidr])
    assert "Network is unreachable" in in_pod(a.netns, "ip", "route", "get", "1.1.1.1").stderr
    started = time.monotonic()
    assert fetch("1.1.1.1", 80, a.netns) == "OSError ENETUNREACH"  # refused locally, at once
    assert fetch("192.0.2.1", 80, a.netns) == "OSError ENETUNREACH"
    assert time.monotonic() - started < 1.5  # two python start-ups, no connect timeout
    assert " via " not in in_pod(a.netns, "ip", "route", "get", b.ip).stdout
    to_service = in_pod(a.netns, "ip", "route", "get", slot.kubernetes_service_ip).stdout
    assert f"via {slot.gateway} dev eth0" in to_service


async def test_a_process_in_a_pod_answers_the_host_and_other_pods(
    pods: tuple[Attachment, Attachment], tmp_path: Path
) -> None:
    a, b = pods
    server = serve_http(a, 8000, "pod A", tmp_path)
    try:
        await answers(a.ip, 8000, None, "pod A")
        assert fetch(a.ip, 8000, b.netns) == "pod A"
        assert fetch(a.ip, 8001, b.netns) == "ConnectionRefusedError ECONNREFUSED"
    finally:
        server.stop()


@pytest.fixture
def outside(network: PodNetwork) -> Iterator[tuple[str, str]]:
    """ "Another interface" of the host: a veth into a namespace of this test, 10.255.253.0/24,
    with forwarding on (as on a router), so only the nftables rules stand in the way."""
    netns, host_end = f"qpodnet-out-{os.getpid()}", f"qpnout{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-batch", "-"], check=True, text=True, input=(
            f"link add {host_end} type veth peer name eth0 netns {netns}\n"
            f"addr add 10.255.253.1/24 dev {host_end}\n"
        ))  # fmt: skip
        for setting in (f"ipv4/conf/{host_end}/forwarding", f"ipv6/conf/{host_end}/disable_ipv6"):
            Path(f"/proc/sys/net/{setting}").write_text("1\n")  # and no IPv6 chatter
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True)
        subprocess.run(["ip", "-n", netns, "-batch", "-"], check=True, text=True, input=(
            "addr add 10.255.253.2/24 dev eth0\nlink set eth0 up\nlink set lo up\n"
            f"route add {network.slot.pod_cidr} via 10.255.253.1\n"
        ))  # fmt: skip
        yield netns, host_end
    finally:
        subprocess.run(["ip", "link", "delete", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "delete", netns], check=True)


def _received(netns: str) -> int:
    """Packets the namespace's eth0 received."""
    return int(in_pod(netns, "cat", "/sys/class/net/eth0/statistics/rx_packets").stdout)


def _udp_in(netns: str) -> int:
    """UDP datagrams that reached the namespace's stack (delivered or to a closed port)."""
    lines = [line.split() for line in in_pod(netns, "cat", "/proc/net/snmp").stdout.splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    counts = dict(zip(names, values, strict=True))
    return int(counts["InDatagrams"]) + int(counts["NoPorts"])


async def test_the_host_never_forwards_between_the_bridge_and_another_interface(
    network: PodNetwork, pods: tuple[Attachment, Attachment], outside: tuple[str, str]
) -> None:
    a, _ = pods
    netns, _ = outside
    table = network.slot.table
    leaving = "pods never leave by another interface"
    entering = "nothing enters the pods from another interface"
    # A pod that had a route off its range (it has none: added here on purpose) is dropped.
    detour = ("10.255.253.0/24", "via", network.slot.gateway)
    await asyncio.to_thread(ip, "-n", a.netns, "route", "add", *detour)
    try:
        before, received = counter(table, "forward", leaving), _received(netns)
        send = "import socket; socket.socket(2, 2).sendto(b'x', ('10.255.253.2', 9))"
        for _ in range(3):
            in_pod(a.netns, sys.executable, "-c", send)
        assert counter(table, "forward", leaving) >= before + 3
        assert _received(netns) == received
    finally:
        await asyncio.to_thread(ip, "-n", a.netns, "route", "del", *detour)
    # ...and so is the other way: from the other interface into the bridge.
    before, delivered = counter(table, "forward", entering), _udp_in(a.netns)
    send = f"import socket; socket.socket(2, 2).sendto(b'x', ('{a.ip}', 9))"
    for _ in range(3):
        in_pod(netns, sys.executable, "-c", send)
    assert counter(table, "forward", entering) >= before + 3
    assert _udp_in(a.netns) == delivered


async def test_attach_is_idempotent_and_release_removes_everything(network: PodNetwork) -> None:
    node = network.slot.node_cidr(0)
    pod = uid()
    started = time.perf_counter()
    first = await network.attach(pod, node)
    attach_ms = 1000 * (time.perf_counter() - started)
    assert await network.attach(pod, node) == first
    simulated = network.allocate(uid(), node)  # one IPAM: a simulated pod gets another address
    assert simulated != first.ip
    network.ipam.release(pod)  # a kubelet forgetting the pod does not free an attached address
    assert network.ipam.address(pod) == first.ip
    started = time.perf_counter()
    await network.release(pod)
    release_ms = 1000 * (time.perf_counter() - started)
    print(f"attach {attach_ms:.1f} ms, release {release_ms:.1f} ms")
    assert f"netns {first.netns}" not in leftovers(network.slot)
    assert f"link {first.host_veth}" not in leftovers(network.slot)
    assert network.allocate(uid(), node) == first.ip  # free again
    assert attach_ms < 1000
    assert release_ms < 1000


def _up(handle: Sandbox) -> SandboxState:
    return handle.up(progress=lambda _: None, detach=True)


async def test_a_second_sandbox_has_its_own_slot_and_leaves_nothing_after_kill_9_then_up(
    sandbox: SandboxState, tmp_path: Path
) -> None:
    handle = Sandbox(tmp_path / "second")
    state = await asyncio.to_thread(_up, handle)
    slot = Slot(int(state.raw["slot"]))
    assert state.raw["slot"] != sandbox.raw["slot"]
    for field in ("bridge", "pod_cidr", "service_cidr"):
        assert state.raw[field] != sandbox.raw[field], field
    assert (state.raw["bridge"], state.raw["pod_cidr"]) == (slot.bridge, slot.pod_cidr)
    addresses = await asyncio.to_thread(ip, "-o", "addr", "show", "dev", slot.bridge)
    assert f"{slot.gateway}/20" in addresses
    assert f"{slot.node_ip(0)}/32" in addresses
    # A pod of that sandbox with a process in it, as the runtime would make.
    pod = await PodNetwork(slot).attach(uid(), slot.node_cidr(15))
    sleeper = await asyncio.to_thread(
        subprocess.Popen, ["sleep", "300"], preexec_fn=netns_preexec(pod.netns)
    )
    os.kill(state.supervisor_pid, signal.SIGKILL)
    try:
        assert await asyncio.to_thread(wait_gone, state.supervisor_pid, 10)
        assert not await asyncio.to_thread(handle.down)  # reaps the dead supervisor
        assert f"netns {pod.netns}" in leftovers(slot)  # nothing cleaned up after SIGKILL...
        again = await asyncio.to_thread(_up, handle)  # ...but the next start does
        assert f"netns {pod.netns}" not in leftovers(slot)
        assert f"link {pod.host_veth}" not in leftovers(slot)
        assert sleeper.wait(10) == -signal.SIGKILL
        assert await asyncio.to_thread(handle.down)
        # And `down` leaves nothing either, on both slots it had: unless another sandbox of
        # this machine (the suite runs several) claimed one of them meanwhile.
        for used in {slot, Slot(int(again.raw["slot"]))}:
            assert leftovers(used) == [] or held(used)
    finally:
        sleeper.kill()
        sleeper.wait()
        handle.down()


def test_without_root_the_sandbox_says_there_is_no_pod_network() -> None:
    """Run as nobody. The checkout may sit in a folder only root can enter (a CI clone in a
    mkdtemp folder), so nobody gets a world-readable copy of app/sandbox (standard library only)
    and the system's Python."""
    world = Path(tempfile.mkdtemp(prefix="qaas-nobody-"))
    try:
        world.chmod(0o755)
        shutil.copytree(Path(__file__).parents[2] / "app" / "sandbox", world / "app" / "sandbox",
                        ignore=shutil.ignore_patterns("standin", "__pycache__"))  # fmt: skip
        (world / "app" / "__init__.py").write_text("")
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        check = "from app.sandbox.podnet import unavailable; print(unavailable())"
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        environment = {"PYTHONPATH": str(world), "PATH": os.environ["PATH"]}
        done = subprocess.run([*nobody, python, "-c", check], capture_output=True, text=True,
                              cwd=world, env=environment)  # fmt: skip
    finally:
        shutil.rmtree(world)
    assert done.stdout.startswith("not root"), done.stdout + done.stderr


async def test_a_sandbox_whose_network_fails_runs_simulated_pods_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a container that is root without CAP_NET_ADMIN: the real nft, refused by the
    kernel. The sandbox still starts (simulated pods), says why, and leaves nothing of its slot
    (the bridge was made before nft failed)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "ip").symlink_to(str(shutil.which("ip")))
    (tools / "nft").write_text(
        f"#!/bin/sh\nexec {shutil.which('setpriv')} --inh-caps=-all --bounding-set=-net_admin "
        f'{shutil.which("nft")} "$@"\n'
    )
    (tools / "nft").chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    handle = Sandbox(tmp_path / "plain")
    state = await asyncio.to_thread(_up, handle)
    monkeypatch.undo()  # the checks below use the real nft
    try:
        slot = Slot(int(state.raw["slot"]))
        assert str(state.raw["pod_network"]).startswith("simulated: setting it up failed: nft")
        assert state.raw["bridge"] is None
        assert leftovers(slot) == []  # no bridge, table or route of its slot
    finally:
        await asyncio.to_thread(handle.down)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert unavailable() == "ip and nft not installed (Debian: iproute2, nftables; ./dev setup)"
