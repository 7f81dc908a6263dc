"""ClusterIPs work (the kube-proxy role of the session sandbox's supervisor): TCP and UDP to
clusterIP:port from the host and from pods reach a ready endpoint, follow the Endpoints as they
change, and are refused at once when none is ready. The endpoint processes run in pod namespaces
this module makes on the sandbox's own bridge (node 15's range: the sandbox's kubelet, node 0,
never hands those addresses out). Root only."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client

from app.sandbox.handle import SandboxState
from app.sandbox.podenv import netns_preexec
from app.sandbox.podnet import Attachment, PodNetwork
from app.sandbox.proxy import Rule, ServiceProxy, apply_nft, rules_of, script
from app.sandbox.slots import Slot, claim, clean, release
from tests.helpers import eventually
from tests.sandbox.test_podnet import Server, fetch, serve_http, uid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pod networking needs root")
MERGE_PATCH = "application/merge-patch+json"
REFUSED = "ConnectionRefusedError ECONNREFUSED"
UDP_ECHO = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = sock.recvfrom(1024)
    sock.sendto(b"echo " + data, peer)
"""


@dataclass
class Backends:
    slot: Slot
    a: Attachment  # http "A" on 8000, "A-alt" on 8001, UDP echo on 5353
    b: Attachment  # a client
    c: Attachment  # http "C" on 8000


@pytest.fixture(scope="module")
async def backends(
    sandbox: SandboxState, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backends]:
    slot = Slot(int(sandbox.raw["slot"]))
    network = PodNetwork(slot)  # the sandbox's bridge and table exist: attach only
    uids = [uid() for _ in range(3)]
    a, b, c = [await network.attach(pod, slot.node_cidr(15)) for pod in uids]
    folder = tmp_path_factory.mktemp("backends")
    servers = [serve_http(a, 8000, "A", folder), serve_http(a, 8001, "A-alt", folder),
               serve_http(c, 8000, "C", folder)]  # fmt: skip
    echo = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", UDP_ECHO, a.ip, "5353"],
        preexec_fn=netns_preexec(a.netns),
    )  # fmt: skip
    servers.append(Server(echo))
    try:
        for pod, port, body in ((a, 8000, "A"), (a, 8001, "A-alt"), (c, 8000, "C")):
            await eventually(functools.partial(get, pod.ip, port, body))
        yield Backends(slot, a, b, c)
    finally:
        for server in servers:
            server.stop()
        for each in uids:
            await network.release(each)


async def get(ip: str, port: int, expected: str | None = None) -> str | None:
    """GET /who from the host (this process): the body, or the error's class and errno."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    except OSError as error:
        result = f"{type(error).__name__} {os.strerror(error.errno or 0)}"
        result = REFUSED if isinstance(error, ConnectionRefusedError) else result
    except TimeoutError:
        result = "TimeoutError"
    else:
        writer.write(b"GET /who HTTP/1.0\r\n\r\n")
        data = await reader.read()
        writer.close()
        result = data.split(b"\r\n\r\n", 1)[1].decode().strip()
    return result if expected is None or result == expected else None


def udp(ip: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"ping", (ip, port))
        try:
            return sock.recv(1024).decode()
        except OSError as error:
            return type(error).__name__


def _endpoints(name: str, ready: list[Attachment], not_ready: Sequence[Attachment] = ()) -> Any:
    ports = [{"name": "web", "port": 8000}, {"name": "alt", "port": 8001},
             {"name": "dns", "port": 5353, "protocol": "UDP"}]  # fmt: skip
    subset = {
        "addresses": [{"ip": pod.ip} for pod in ready],
        "notReadyAddresses": [{"ip": pod.ip} for pod in not_ready],
        "ports": ports,
    }
    return {"metadata": {"name": name}, "subsets": [subset] if ready or not_ready else []}


async def _service(core: client.CoreV1Api, namespace: str, name: str) -> str:
    """A selector-less Service with three ports; its ClusterIP."""
    ports = [{"name": "web", "port": 80, "targetPort": 8000},
             {"name": "alt", "port": 81, "targetPort": 8001},
             {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]  # fmt: skip
    service = await core.create_namespaced_service(
        namespace, {"metadata": {"name": name}, "spec": {"ports": ports}}
    )
    return str(service.spec.cluster_ip)


async def test_a_cluster_ip_reaches_its_endpoint_and_follows_the_endpoints(
    kube_api: client.ApiClient, namespace: str, backends: Backends
) -> None:
    core = client.CoreV1Api(kube_api)
    a, b, c = backends.a, backends.b, backends.c
    ip = await _service(core, namespace, "web")
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(backends.slot.service_cidr)
    assert await get(ip, 80) == REFUSED  # no endpoints yet: refused, like kube-proxy

    await core.create_namespaced_endpoints(namespace, _endpoints("web", [a]))
    await eventually(lambda: get(ip, 80, "A"))
    assert await asyncio.to_thread(fetch, ip, 80, b.netns) == "A"  # from another pod
    assert await asyncio.to_thread(fetch, ip, 80, a.netns) == "A"  # from the endpoint itself
    assert await get(ip, 81) == "A-alt"  # ports are matched by name
    assert await asyncio.to_thread(udp, ip, 53) == "echo ping"

    changed = time.monotonic()
    await core.patch_namespaced_endpoints(
        "web", namespace, _endpoints("web", [c]), _content_type=MERGE_PATCH
    )
    await eventually(lambda: get(ip, 80, "C"), every=0.01)
    print(f"the host follows an Endpoints change in {1000 * (time.monotonic() - changed):.0f} ms")
    assert await asyncio.to_thread(fetch, ip, 80, b.netns) == "C"
    assert await get(ip, 81) == REFUSED  # C has no server on 8001: its own refusal

    await core.patch_namespaced_endpoints(
        "web", namespace, _endpoints("web", [], not_ready=[a, c]), _content_type=MERGE_PATCH
    )
    await eventually(lambda: get(ip, 80, REFUSED))
    started = time.monotonic()
    assert await get(ip, 80) == REFUSED
    assert time.monotonic() - started < 0.5  # at once, not after a timeout
    assert await asyncio.to_thread(fetch, ip, 80, b.netns) == REFUSED


async def test_both_ready_endpoints_get_connections(
    kube_api: client.ApiClient, namespace: str, backends: Backends
) -> None:
    core = client.CoreV1Api(kube_api)
    ip = await _service(core, namespace, "pair")
    await core.create_namespaced_endpoints(namespace, _endpoints("pair", [backends.a, backends.c]))
    seen: set[str] = set()

    async def both() -> bool:
        seen.add(str(await get(ip, 80)))
        return {"A", "C"} <= seen  # refusals until the rules are in count for nothing

    await eventually(both)


async def test_a_named_target_port_is_resolved_through_the_endpoints(
    kube_api: client.ApiClient, namespace: str, backends: Backends
) -> None:
    """A real pod (simulated: no process) with a named container port behind a Service whose
    targetPort is that name: the endpoints controller resolves it, the rule follows."""
    core = client.CoreV1Api(kube_api)
    container = {"name": "web", "image": "example.invalid/web:1",
                 "ports": [{"name": "http", "containerPort": 8080}]}  # fmt: skip
    await core.create_namespaced_pod(namespace, {
        "metadata": {"name": "named", "labels": {"app": "named"}},
        "spec": {"containers": [container]},
    })  # fmt: skip
    await core.create_namespaced_service(namespace, {
        "metadata": {"name": "named"},
        "spec": {"selector": {"app": "named"}, "ports": [{"port": 80, "targetPort": "http"}]},
    })  # fmt: skip

    async def rule() -> str | None:
        pod = await core.read_namespaced_pod("named", namespace)
        if not pod.status.pod_ip:
            return None
        listing = await asyncio.to_thread(
            subprocess.run, ["nft", "list", "table", "ip", backends.slot.table],
            capture_output=True, text=True,
        )  # fmt: skip
        return listing.stdout if f"{pod.status.pod_ip} . 8080" in listing.stdout else None

    await eventually(rule)


def rules(services: dict[Any, Any], endpoints: dict[Any, Any], allowed: Any) -> list[Rule]:
    """Every Service's rules, in the order a full rewrite writes them (``ServiceProxy.sync``)."""
    return [
        rule
        for key, service in sorted(services.items())
        for rule in rules_of(key, service, endpoints.get(key), allowed)
    ]


def test_endpoints_outside_the_slot_never_get_a_rule() -> None:
    slot = Slot(3)
    allowed = [ipaddress.IPv4Network(slot.pod_cidr), ipaddress.IPv4Network(slot.node_range)]
    service = {"spec": {"clusterIP": "10.96.48.10", "ports": [{"port": 80}]}}
    for address in ("127.0.0.1", "192.0.2.1", "1.1.1.1", "10.244.0.5", "172.30.4.10"):
        endpoints = {"subsets": [{"addresses": [{"ip": address}], "ports": [{"port": 80}]}]}
        assert rules({("n", "s"): service}, {("n", "s"): endpoints}, allowed) == [], address
    inside = {"subsets": [{"addresses": [{"ip": "10.244.49.7"}], "ports": [{"port": 80}]}]}
    [rule] = rules({("n", "s"): service}, {("n", "s"): inside}, allowed)
    assert rule.targets == (("10.244.49.7", 80),)


def _listing(table: str) -> str:
    """The table as nft lists it, with its name taken out (to compare two tables)."""
    found = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    return found.stdout.replace(table, "T")


async def test_a_change_rewrites_only_the_service_ports_it_changed(
    kube_api: client.ApiClient, namespace: str
) -> None:
    """A proxy of a slot of this test's own (a table with the map and chains only: no hook, so
    no packet meets it) following the sandbox's API. After the first sync, a changed Endpoints,
    a new Service and a deleted one each apply transactions that name only that Service's
    chains, and never flush the map; the table ends as a full rewrite of the same objects would
    make it."""
    slot = await asyncio.to_thread(claim)
    twin = f"{slot.table}_twin"  # the full rewrite, to compare with
    applied: list[str] = []

    async def apply(text: str) -> None:
        applied.append(text)
        await apply_nft(text)

    core = client.CoreV1Api(kube_api)
    ips = [str(ipaddress.IPv4Network(slot.pod_cidr)[10 + i]) for i in range(5)]
    for name, ip in zip("abc", ips, strict=False):
        await _service(core, namespace, name)
        await core.create_namespaced_endpoints(namespace, _endpoints_at(name, [ip]))
    proxy = ServiceProxy(kube_api, slot, apply)

    def chains(name: str) -> set[str]:
        """The chains of the Service's ports now (none while it does not exist)."""
        found = {key: o for key, o in proxy.services.items() if key == (namespace, name)}
        return {rule.chain for rule in rules(found, proxy.endpoints, proxy.allowed)}

    async def step(change: Callable[[], Awaitable[Any]], name: str, ip: str, gone: str) -> None:
        done, allowed = len(applied), chains(name)  # its chains before the change, and after
        await change()
        await eventually(lambda: _in_table(slot.table, ip, gone), within=30)
        allowed |= chains(name)
        named = {c for text in applied[done:] for c in re.findall(r"svc-[0-9a-f]{16}", text)}
        assert named, applied[done:]
        assert named <= allowed, (name, applied[done:])
        assert not any("flush map" in text for text in applied[done:]), applied[done:]

    await apply_nft(_empty(slot.table))
    running = asyncio.create_task(proxy.run())
    try:
        await eventually(lambda: _in_table(slot.table, ips[2]), within=30)
        assert "flush map" in applied[0]  # the first sync writes the map whole
        moved = _endpoints_at("b", [ips[3]])
        await step(lambda: core.patch_namespaced_endpoints("b", namespace, moved,
                                                           _content_type=MERGE_PATCH),
                   "b", ips[3], gone=ips[1])  # fmt: skip

        async def add_d() -> None:
            await _service(core, namespace, "d")
            await core.create_namespaced_endpoints(namespace, _endpoints_at("d", [ips[4]]))

        await step(add_d, "d", ips[4], gone=ips[1])
        await step(lambda: core.delete_namespaced_service("c", namespace), "c", ips[4],
                   gone=ips[2])  # fmt: skip

        wanted = rules(proxy.services, proxy.endpoints, proxy.allowed)
        assert len(wanted) == 3  # a, b and d, port "web" each
        await apply_nft(_empty(twin) + script(twin, wanted, set()))
        assert _listing(slot.table) == _listing(twin)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await asyncio.to_thread(subprocess.run, ["nft", "delete", "table", "ip", twin],
                                capture_output=True)  # fmt: skip
        await asyncio.to_thread(clean, slot)
        await asyncio.to_thread(release, slot)


def _empty(table: str) -> str:
    """The table with its ``services`` map only (replacing any table of that name)."""
    services = "map services { type ipv4_addr . inet_proto . inet_service : verdict; }"
    return f"table ip {table}\ndelete table ip {table}\ntable ip {table} {{ {services}; }}\n"


async def _in_table(table: str, ip: str, gone: str | None = None) -> bool:
    """Whether the table sends to ``ip`` (and no longer to ``gone``)."""
    listing = await asyncio.to_thread(_listing, table)
    return f"{ip} . " in listing and (gone is None or f"{gone} . " not in listing)


def _endpoints_at(name: str, ips: list[str]) -> Any:
    subset = {"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "web", "port": 8000}]}
    return {"metadata": {"name": name}, "subsets": [subset]}
