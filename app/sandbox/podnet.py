"""Pod networking for a sandbox, the way a bridge CNI plugin does it: a network namespace per pod,
a veth into the sandbox's bridge, an address from the node's pod CIDR.

One `PodNetwork` per sandbox, shared by its kubelets. ``setup()`` makes the slot's host side (see
`app.sandbox.slots` for the names and ranges):

- the bridge ``qsbx<k>`` with the pods' gateway ``10.244.(16k).1/20`` and every node's InternalIP
  ``172.30.k.(10+i)/32`` (the apiserver dials kubelets there);
- forwarding on that bridge only (``net.ipv4.conf.qsbx<k>.forwarding=1``; the global ``ip_forward``
  is never touched): pod -> ClusterIP -> pod is routed through the host; no IPv6 on the bridge
  (the table is IPv4: pods get no IPv6 path to the host's stack);
- the nftables table ``ip qaas_sbx<k>``: its forward chain drops whatever enters from the bridge
  and leaves by another interface and whatever enters the bridge from another one (so no pod
  packet is ever forwarded off the machine, whatever ``ip_forward`` says); an address of the
  Service range that no Service rule rewrote is refused (TCP reset, ICMP otherwise), from pods
  and from the host; the NAT chains and the ``services`` verdict map the kube-proxy role
  (`app.sandbox.proxy`) fills; a masquerade of rewritten traffic that leaves by the bridge, so
  that the reply of pod B to pod A via a ClusterIP passes the host again to be rewritten back;
- the route ``10.96.(16k).0/20 dev qsbx<k>``: the host's connect() to a ClusterIP gets a route,
  and nftables' NAT output rewrites the destination before the packet is sent.

``attach(uid, node_cidr)`` gives a pod a namespace ``qsbx<k>-<uid12>`` with ``lo`` up and ``eth0``
(the peer of ``qv<k>-<uid8>`` on the bridge, in hairpin mode: with ``br_netfilter`` loaded, as on
these hosts, a pod that dials its own ClusterIP gets its packet back on the port it came from),
``podIP/20`` on it and exactly two routes: the pod range on-link and the Service range via the
gateway. No default route: dialling any other address fails at once with ENETUNREACH. An attach
costs three ``ip`` runs (8 ms median here); it is idempotent per uid. ``release(uid)`` deletes the
veth (synchronously, so nothing of the pod is left when it returns: about 35 ms, the kernel's
wait for a network device to go) and the namespace. Different pods attach and release in
parallel; calls for the same pod wait for each other.

Simulated pods take an address from the same `Ipam` without a namespace (``allocate``), so
addresses never collide. After a kubelet restart in the same supervisor the `PodNetwork` (and its
attachments) lives on, and ``attach`` of a known uid answers the existing attachment. A new
supervisor starts from a clean slot (`app.sandbox.slots.claim` removes everything a dead one
left), with a fresh etcd: there is nothing to re-adopt across supervisors, by design.

A process runs in a pod's namespace with ``preexec_fn=podenv.netns_preexec(attachment.netns)``
(setns(2) in the child between fork and exec), or as ``ip netns exec <netns> <command>``.

The methods that change the host are coroutines: they run ``ip`` as child processes and never
block the event loop the kubelets and the proxy share.

Example::

    network = PodNetwork(slot, nodes=2)
    await network.setup()
    pod = await network.attach(uid, slot.node_cidr(0))   # pod.ip, pod.netns
    subprocess.Popen(["python3", "-m", "http.server"], preexec_fn=netns_preexec(pod.netns))
    await network.release(uid)
    await network.teardown()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.sandbox.plugins import PodAddress
from app.sandbox.slots import Slot, clean

log = logging.getLogger("qaas.sandbox")

NETNS_DIR = Path("/run/netns")


class PodNetworkError(RuntimeError):
    """An ``ip`` or ``nft`` command failed; the message has the command and its stderr."""


class Ipam:
    """Pod addresses of one sandbox: each pod uid gets one address from its node's /24.

    Addresses ending in .0, .1 and .255 are never given (.1 of node 0 is the pods' gateway).
    An attached pod's address is pinned: only `PodNetwork.release` frees it, so a kubelet that
    forgets the pod early cannot hand the address to another pod while the veth still holds it.
    """

    def __init__(self) -> None:
        self._by_uid: dict[str, str] = {}
        self._owner: dict[str, str] = {}  # address -> uid
        self._pinned: set[str] = set()

    def allocate(self, uid: str, node_cidr: str) -> str:
        """The pod's address: the one it has, else the first free one of ``node_cidr``."""
        if uid in self._by_uid:
            return self._by_uid[uid]
        for host in ipaddress.IPv4Network(node_cidr).hosts():
            address = str(host)
            if address not in self._owner and not address.endswith(".1"):
                self._by_uid[uid] = address
                self._owner[address] = uid
                return address
        raise PodNetworkError(f"pod CIDR {node_cidr} is full")

    def reserve(self, uid: str, address: str) -> None:
        """Record an address a pod already has (a restarted kubelet's relist)."""
        if self._owner.get(address, uid) != uid:
            log.warning("pod %s reports %s, which belongs to pod %s", uid, address,
                        self._owner[address])  # fmt: skip
            return
        self.release(uid)
        self._by_uid[uid] = address
        self._owner[address] = uid

    def release(self, uid: str) -> None:
        """Free the pod's address, unless it is pinned by an attachment."""
        if uid in self._pinned:
            return
        address = self._by_uid.pop(uid, None)
        if address is not None:
            self._owner.pop(address, None)

    def address(self, uid: str) -> str | None:
        return self._by_uid.get(uid)

    def pin(self, uid: str) -> None:
        self._pinned.add(uid)

    def unpin(self, uid: str) -> None:
        self._pinned.discard(uid)


@dataclass(frozen=True)
class Attachment:
    """A pod's place on the network: its namespace, address and the host end of its veth."""

    uid: str
    netns: str
    ip: str
    host_veth: str

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns


def unavailable() -> str | None:
    """Why this host cannot have a pod network (None if it can)."""
    if os.geteuid() != 0:
        return "not root: network namespaces, the bridge and nftables need root"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: iproute2, nftables; ./dev setup)"
    return None


async def execute(*args: str, stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise PodNetworkError(f"{' '.join(args)}: {err.decode(errors='replace').strip()}")
    return out.decode()


def _sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name
    if path.exists():  # no IPv6 on this host: nothing to disable
        path.write_text(f"{value}\n")


def base_ruleset(slot: Slot) -> str:
    """The nftables script of the slot's table without Services (replaces any earlier table)."""
    bridge, services = slot.bridge, slot.service_cidr
    return f"""\
table ip {slot.table}
delete table ip {slot.table}
table ip {slot.table} {{
    map services {{
        type ipv4_addr . inet_proto . inet_service : verdict
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname "{bridge}" oifname != "{bridge}" counter drop comment "pods never leave by another interface"
        oifname "{bridge}" iifname != "{bridge}" counter drop comment "nothing enters the pods from another interface"
        ip daddr {services} meta l4proto tcp counter reject with tcp reset comment "Service without ready endpoint"
        ip daddr {services} counter reject
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr {services} meta l4proto tcp counter reject with tcp reset comment "Service without ready endpoint"
        ip daddr {services} counter reject
        ct status dnat ct original ip daddr {services} oifname != {{ "{bridge}", "lo" }} counter drop comment "rewritten only towards pods"
    }}
    chain prerouting {{
        type nat hook prerouting priority -100; policy accept;
        iifname "{bridge}" ip daddr . meta l4proto . th dport vmap @services
    }}
    chain nat_output {{
        type nat hook output priority -100; policy accept;
        ip daddr . meta l4proto . th dport vmap @services
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        oifname "{bridge}" ct status dnat counter masquerade comment "replies pass the host again"
    }}
}}
"""  # noqa: E501


class PodNetwork:
    """The pod network of one sandbox slot (see the module's docstring)."""

    def __init__(self, slot: Slot, nodes: int = 1) -> None:
        self.slot = slot
        self.nodes = nodes
        self.ipam = Ipam()
        self._attachments: dict[str, Attachment] = {}
        # One lock per pod uid (held during its ip runs): pods attach and release in parallel.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def allocate(self, uid: str, node_cidr: str) -> str:
        """An address for a simulated pod (no namespace)."""
        return self.ipam.allocate(uid, node_cidr)

    def attachment(self, uid: str) -> Attachment | None:
        return self._attachments.get(uid)

    async def setup(self) -> None:
        """Make the bridge, addresses, forwarding, nftables table and Service route."""
        slot, bridge = self.slot, self.slot.bridge
        prefix = ipaddress.IPv4Network(slot.pod_cidr).prefixlen
        commands = [
            f"link add {bridge} type bridge",
            f"addr add {slot.gateway}/{prefix} dev {bridge}",
            *(f"addr add {slot.node_ip(i)}/32 dev {bridge}" for i in range(self.nodes)),
            f"link set {bridge} up",
            f"route replace {slot.service_cidr} dev {bridge}",
        ]
        await execute("ip", "-batch", "-", stdin="\n".join(commands) + "\n")
        await asyncio.to_thread(_sysctl, f"net/ipv4/conf/{bridge}/forwarding", "1")
        await asyncio.to_thread(_sysctl, f"net/ipv6/conf/{bridge}/disable_ipv6", "1")
        await execute("nft", "-f", "-", stdin=base_ruleset(slot))
        log.info("pod network of slot %d: bridge %s, pods %s, Services %s", slot.index, bridge,
                 slot.pod_cidr, slot.service_cidr)  # fmt: skip

    def _lock(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = self._locks[uid] = asyncio.Lock()
        return lock

    async def attach(self, uid: str, node_cidr: str) -> Attachment:
        """Give pod ``uid`` a network namespace and an address of ``node_cidr``."""
        async with self._lock(uid):
            known = self._attachments.get(uid)
            if known is not None:
                return known
            slot = self.slot
            ip = self.ipam.allocate(uid, node_cidr)
            self.ipam.pin(uid)
            pod = Attachment(uid, slot.netns(uid), ip, slot.veth(uid))
            prefix = ipaddress.IPv4Network(slot.pod_cidr).prefixlen
            try:
                await execute("ip", "netns", "add", pod.netns)
                await execute("ip", "-batch", "-", stdin=(
                    f"link add {pod.host_veth} type veth peer name eth0 netns {pod.netns}\n"
                    f"link set {pod.host_veth} master {slot.bridge}\n"
                    f"link set {pod.host_veth} type bridge_slave hairpin on\n"
                    f"link set {pod.host_veth} up\n"
                ))  # fmt: skip
                await execute("ip", "-netns", pod.netns, "-batch", "-", stdin=(
                    f"addr add {ip}/{prefix} dev eth0\n"
                    "link set lo up\n"
                    "link set eth0 up\n"
                    f"route add {slot.service_cidr} via {slot.gateway} dev eth0\n"
                ))  # fmt: skip
            except BaseException:
                await self._remove(pod)
                self.ipam.unpin(uid)
                self.ipam.release(uid)
                raise
            self._attachments[uid] = pod
            return pod

    async def release(self, uid: str) -> None:
        """Remove the pod's namespace and veth and free its address (attached or simulated)."""
        async with self._lock(uid):
            pod = self._attachments.pop(uid, None)
            if pod is not None:
                await self._remove(pod)
            self.ipam.unpin(uid)
            self.ipam.release(uid)

    @staticmethod
    async def _remove(pod: Attachment) -> None:
        for command in (
            ("ip", "link", "delete", pod.host_veth),  # takes eth0 along, synchronously
            ("ip", "netns", "delete", pod.netns),
        ):
            try:
                await execute(*command)
            except PodNetworkError as error:
                if "Cannot find device" not in str(error) and "No such file" not in str(error):
                    log.warning("%s", error)

    async def teardown(self) -> None:
        """Remove everything of the slot from the host (pods, bridge, table, routes)."""
        for uid in list(self._attachments):
            self.ipam.unpin(uid)
            self.ipam.release(uid)
        self._attachments.clear()
        await asyncio.to_thread(clean, self.slot)


class NodePods:
    """One kubelet's plug-in (`app.sandbox.plugins.PodNetwork`) on the sandbox's `PodNetwork`:
    process pods get a namespace, simulated pods an address of the same IPAM."""

    def __init__(self, network: PodNetwork, node_cidr: str) -> None:
        self.network = network
        self.node_cidr = node_cidr

    async def attach(self, pod: dict[str, Any], *, namespace: bool) -> PodAddress:
        uid = pod["metadata"]["uid"]
        if namespace:
            attached = await self.network.attach(uid, self.node_cidr)
            return PodAddress(attached.ip, attached.netns)
        known = str((pod.get("status") or {}).get("podIP") or "")
        mine = known and ipaddress.IPv4Address(known) in ipaddress.IPv4Network(self.node_cidr)
        if mine and self.network.ipam.address(uid) is None:
            self.network.ipam.reserve(uid, known)  # a restarted kubelet's simulated pod
        return PodAddress(self.network.allocate(uid, self.node_cidr), None)

    async def detach(self, pod: dict[str, Any]) -> None:
        await self.network.release(pod["metadata"]["uid"])
