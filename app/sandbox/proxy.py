"""The kube-proxy role of a sandbox: traffic to a Service's ClusterIP:port reaches a ready endpoint.

`ServiceProxy` lists and watches Services and Endpoints of every namespace and keeps nftables
rules in the slot's table (``ip qaas_sbx<k>``, made by `app.sandbox.podnet.PodNetwork.setup`):

- the table's ``services`` verdict map sends ``clusterIP . protocol . port`` to a chain
  ``svc-<hash>`` of that Service port; the map is consulted by NAT prerouting for packets from
  the bridge (pods) and by NAT output (the host);
- the chain rewrites the destination to one ready endpoint, chosen at random per connection
  (``dnat ip to numgen random mod N map { 0 : ip . port, ... }``);
- a Service port without ready endpoints has no map entry: the table's filter chains refuse its
  packets (TCP reset, ICMP port unreachable for UDP), as kube-proxy does.

Endpoints are matched to Service ports by port name (the endpoints controller names them after
the Service's ports and resolves a named ``targetPort`` per pod; a selector-less Service's manual
Endpoints name their ports the same way), and by protocol. Only ready addresses (``addresses``,
not ``notReadyAddresses``) count, and only those in the slot's pod range or its node addresses:
an Endpoints object naming any other address is ignored for that address (the ``kubernetes``
Service's endpoint 127.0.0.1 too), so no rule can rewrite a packet towards another machine.

Every sync is one ``nft -f`` script (one transaction, all or nothing). The first one, and the
one after a failed apply, rewrite the map whole and delete chains of gone Service ports (an
earlier proxy's too). After that a sync touches only the Services whose objects changed since the
last one: their map elements, and their chains flushed and rewritten, added or deleted. Changes
that arrive together are applied together; a change that alters no rule applies nothing.
Rewriting everything at every change cost time in the kernel that grows faster than the table
(measured here: 245 ms for 1,000 Service ports, 5.6 s for 5,000, nearly all of it in the kernel,
where a kernel built without preemption lets nothing else run on that core, whatever its
scheduling policy); one change among 5,000 ports takes about 30 ms, most of it nft reading the
table's chains. Established
connections keep their endpoint (conntrack; UDP flows too, for as long as they stay in
conntrack: there is no ``conntrack`` tool to flush them), new ones follow the change; the host's
next connection follows an Endpoints change about 30 ms after the API write.

Example::

    proxy = ServiceProxy(api, slot)
    task = asyncio.create_task(proxy.run())
    await proxy.synced.wait()       # the rules reflect a first full listing
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from app.sandbox.follow import follow
from app.sandbox.podnet import PodNetworkError, execute
from app.sandbox.slots import Slot

log = logging.getLogger("qaas.sandbox")

Object = dict[str, Any]
Key = tuple[str, str]  # namespace, name
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class Rule:
    """One Service port and the endpoints its traffic goes to."""

    chain: str
    cluster_ip: str
    protocol: str  # tcp, udp, sctp
    port: int
    targets: tuple[tuple[str, int], ...]


def _chain(namespace: str, name: str, port: Object) -> str:
    ident = f"{namespace}/{name}/{port.get('name') or ''}/{port.get('protocol') or 'TCP'}"
    return "svc-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


def rules_of(
    key: Key,
    service: Object | None,
    endpoints: Object | None,
    allowed: list[ipaddress.IPv4Network],
) -> list[Rule]:
    """The rules of one Service (none if it is gone, headless or has no ready endpoint)."""
    spec = (service or {}).get("spec", {})
    cluster_ip = spec.get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        return []
    subsets = (endpoints or {}).get("subsets") or []
    found = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            continue
        targets = set()
        for subset in subsets:
            for target in subset.get("ports") or []:
                if (target.get("name") or "") != (port.get("name") or ""):
                    continue
                if (target.get("protocol") or "TCP") != protocol:
                    continue
                for address in subset.get("addresses") or []:
                    ip = ipaddress.IPv4Address(address["ip"])
                    if any(ip in network for network in allowed):
                        targets.add((str(ip), int(target["port"])))
        if targets:
            found.append(Rule(_chain(*key, port), cluster_ip, PROTOCOLS[protocol],
                              int(port["port"]), tuple(sorted(targets))))  # fmt: skip
    return found


def script(table: str, wanted: list[Rule], existing: set[str]) -> str:
    """One nftables transaction: the map and the Service chains exactly as ``wanted``."""
    lines = [f"flush map ip {table} services"]
    names = {rule.chain for rule in wanted}
    lines += [f"delete chain ip {table} {chain}" for chain in sorted(existing - names)]
    for rule in wanted:
        lines += [f"add chain ip {table} {rule.chain}", f"flush chain ip {table} {rule.chain}",
                  _rule_line(table, rule)]  # fmt: skip
    return "\n".join([*lines, *_elements("add", table, wanted)]) + "\n"


def changes(table: str, before: dict[str, Rule], after: dict[str, Rule]) -> str:
    """One nftables transaction that takes the Service ports in ``before`` (by chain, as the
    table has them) to ``after``, touching nothing else; empty if they are equal."""
    if before == after:
        return ""
    moved = [
        rule for chain, rule in sorted(before.items()) if _entry(after.get(chain)) != _entry(rule)
    ]
    lines = _elements("delete", table, moved)  # first: a map element refers to its chain
    lines += [f"delete chain ip {table} {chain}" for chain in sorted(before) if chain not in after]
    for chain, rule in sorted(after.items()):
        old = before.get(chain)
        if old is None:
            lines += [f"add chain ip {table} {chain}", _rule_line(table, rule)]
        elif _rule_line(table, old) != _rule_line(table, rule):
            lines += [f"flush chain ip {table} {chain}", _rule_line(table, rule)]
    entered = [rule for chain, rule in sorted(after.items())
               if _entry(before.get(chain)) != _entry(rule)]  # fmt: skip
    return "\n".join([*lines, *_elements("add", table, entered)]) + "\n"


def _rule_line(table: str, rule: Rule) -> str:
    choices = ", ".join(f"{i} : {ip} . {port}" for i, (ip, port) in enumerate(rule.targets))
    return (
        f"add rule ip {table} {rule.chain} meta l4proto {rule.protocol} "
        f"dnat ip to numgen random mod {len(rule.targets)} map {{ {choices} }}"
    )


def _entry(rule: Rule | None) -> str | None:
    """The rule's key in the ``services`` map (None: no rule)."""
    return None if rule is None else f"{rule.cluster_ip} . {rule.protocol} . {rule.port}"


def _elements(verb: str, table: str, of: list[Rule]) -> list[str]:
    """The ``add`` (with verdicts) or ``delete`` of the map elements of ``of``, one line."""
    if not of:
        return []
    if verb == "add":
        items = ", ".join(f"{_entry(rule)} : goto {rule.chain}" for rule in of)
    else:
        items = ", ".join(str(_entry(rule)) for rule in of)
    return [f"{verb} element ip {table} services {{ {items} }}"]


async def apply_nft(text: str) -> None:
    await execute("nft", "-f", "-", stdin=text)


class ServiceProxy:
    """Follows Services and Endpoints and keeps the slot's Service rules (see the module)."""

    def __init__(
        self,
        api: client.ApiClient,
        slot: Slot,
        apply: Callable[[str], Awaitable[None]] = apply_nft,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.slot = slot
        self.apply = apply
        self.allowed = [ipaddress.IPv4Network(cidr) for cidr in (slot.pod_cidr, slot.node_range)]
        self.services: dict[Key, Object] = {}
        self.endpoints: dict[Key, Object] = {}
        self.synced = asyncio.Event()
        self.applied = 0  # scripts applied so far
        self.last_apply_seconds = 0.0
        self._rules: dict[Key, list[Rule]] = {}  # of every Service with rules, by Service
        self._dirty: set[Key] = set()  # Services whose rules may have changed since the last sync
        self._in_step = False  # the table holds exactly ``_rules``: a change is applied alone
        self._changed = asyncio.Event()
        self._listed: set[str] = set()

    async def run(self) -> None:
        """Watch both kinds and apply their changes until cancelled."""
        watchers = [
            asyncio.create_task(self._follow("services", self.core.list_service_for_all_namespaces,
                                             self.services)),
            asyncio.create_task(self._follow("endpoints",
                                             self.core.list_endpoints_for_all_namespaces,
                                             self.endpoints)),
        ]  # fmt: skip
        changed: asyncio.Task[Any] | None = None
        try:
            while True:
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait([changed, *watchers], return_when=asyncio.FIRST_COMPLETED)
                for task in watchers:
                    if task.done():
                        task.result()  # a watcher only ends by an error: surface it
                self._changed.clear()
                if self._listed == {"services", "endpoints"}:
                    try:
                        await self.sync()
                    except PodNetworkError as error:  # retried at the next change
                        log.error("Service rules not applied: %s", error)
                        continue
                    self.synced.set()
        finally:
            for task in [*watchers, *([changed] if changed else [])]:
                task.cancel()
            await asyncio.gather(*watchers, *([changed] if changed else []),
                                 return_exceptions=True)  # fmt: skip

    async def sync(self) -> None:
        """Apply the rules of the Services changed since the last sync. The first sync, and the
        one after a failed apply, rewrite the whole map (dropping chains an earlier proxy left)."""
        dirty, self._dirty = self._dirty, set()
        before = {rule.chain: rule for key in dirty for rule in self._rules.get(key, [])}
        for key in dirty:
            found = rules_of(key, self.services.get(key), self.endpoints.get(key), self.allowed)
            if found:
                self._rules[key] = found
            else:
                self._rules.pop(key, None)
        if self._in_step:
            after = {rule.chain: rule for key in dirty for rule in self._rules.get(key, [])}
            text = changes(self.slot.table, before, after)
        else:
            wanted = [rule for key in sorted(self._rules) for rule in self._rules[key]]
            text = script(self.slot.table, wanted, await self._existing_chains())
        if not text:
            return
        started = time.perf_counter()
        self._in_step = False  # until applied: nft -f is one transaction, all or nothing
        await self.apply(text)
        self._in_step = True
        self.last_apply_seconds = time.perf_counter() - started
        self.applied += 1
        log.debug("Service rules: %d changed (%.1f ms)", len(dirty), 1000 * self.last_apply_seconds)

    async def _existing_chains(self) -> set[str]:
        """Service chains left in the table (by an earlier proxy of this sandbox)."""
        try:
            listing = await execute("nft", "list", "table", "ip", self.slot.table)
        except Exception:  # no table or no nft: the apply will say so
            return set()
        words = listing.split()
        return {words[i + 1] for i, word in enumerate(words[:-1])
                if word == "chain" and words[i + 1].startswith("svc-")}  # fmt: skip

    async def _follow(
        self, kind: str, lister: Callable[..., Awaitable[Any]], store: dict[Key, Object]
    ) -> None:
        async def listed(items: list[Object]) -> None:
            self._dirty.update(store)  # those gone since are dirty too
            store.clear()
            for item in items:
                store[_key(item)] = item
            self._dirty.update(store)
            self._listed.add(kind)
            self._changed.set()

        async def changed(event: str, item: Object) -> None:
            key = _key(item)
            if event == "DELETED":
                store.pop(key, None)
            elif event in ("ADDED", "MODIFIED"):
                store[key] = item
            self._dirty.add(key)
            self._changed.set()

        await follow(kind, lister, listed, changed)


def _key(item: Object) -> Key:
    meta = item["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])
