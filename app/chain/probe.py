"""The chain probe: asks each node's JSON-RPC how its chain is, at an interval, within a
concurrency budget, backing off from nodes that do not answer.

Per target (a node's pod IP and its consensus) one JSON-RPC batch asks ``eth_blockNumber``,
``net_peerCount``, ``eth_syncing``, ``admin_nodeInfo`` (the enode), ``web3_clientVersion`` and,
by consensus, ``raft_role``, ``raft_leader``, ``raft_cluster`` (the node's raft ID: the entry
whose ``nodeId`` is its enode's public key) or ``istanbul_getValidators``. "Method not found"
leaves a fact unknown (None); the node answers if ``eth_blockNumber`` does. An address outside
the allowed ranges (app/domain/probe_scope.py) is never dialled: its reading says why.

A node that does not answer is probed again after the interval, then after twice that, and so
on up to ``backoff_max``; an answer, or a new container run (``Target.run``), resets it.

Example::

    probe = ChainProbe(RpcClient(timeout=3), targets=load_targets, sink=record,
                       networks=probe_networks("10.0.0.0/8"), interval=5)
    await probe.run()           # or: readings = await probe.round()
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.chain.rpc import Reply, RpcClient, Unreachable
from app.domain.enums import Consensus
from app.domain.probe_scope import Network, may_dial
from app.domain.qnm import PORTS

log = logging.getLogger("qaas.chain")

GETH_RPC_PORT = next(p.number for p in PORTS if p.name == "geth-rpc")
COMMON = ("eth_blockNumber", "net_peerCount", "eth_syncing", "admin_nodeInfo",
          "web3_clientVersion")  # fmt: skip
BY_CONSENSUS = {
    Consensus.RAFT: ("raft_role", "raft_leader", "raft_cluster"),
    Consensus.IBFT: ("istanbul_getValidators",),
}


@dataclass(frozen=True)
class Target:
    node_id: str
    address: str  # the pod's IP
    consensus: Consensus
    run: str = ""  # which container run of the node this is (opaque; resets the back-off)
    port: int = GETH_RPC_PORT

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Reading:
    """What one probe of a node found; None: unknown (not asked, not answered, not spoken)."""

    answering: bool
    at: datetime.datetime
    error: str | None = None
    block_number: int | None = None
    peer_count: int | None = None
    syncing: bool | None = None
    enode: str | None = None
    client_version: str | None = None
    raft_role: str | None = None
    raft_leader: str | None = None
    raft_id: int | None = None
    raft_member: bool | None = None
    validators: tuple[str, ...] | None = None


@dataclass
class _Backoff:
    run: str
    delay: float
    due: float  # time.monotonic()


@dataclass
class ProbeStats:
    rounds: int = 0
    probes: int = 0
    refused: int = 0  # targets outside the allowed ranges: never dialled
    skipped: int = 0  # targets in back-off
    last_round_seconds: float = 0.0
    by_outcome: dict[str, int] = field(default_factory=dict)


class ChainProbe:
    def __init__(
        self,
        rpc: RpcClient,
        targets: Callable[[], Awaitable[Sequence[Target]]],
        sink: Callable[[Target, Reading], Awaitable[None]],
        *,
        networks: tuple[Network, ...],
        interval: float = 5.0,
        concurrency: int = 20,
        backoff_max: float = 60.0,
    ) -> None:
        self.rpc = rpc
        self.targets = targets
        self.sink = sink
        self.networks = networks
        self.interval = interval
        self.backoff_max = backoff_max
        self.budget = asyncio.Semaphore(concurrency)
        self.backoff: dict[str, _Backoff] = {}
        self.stats = ProbeStats()
        self.failing_since: float | None = None  # for the control loop's supervision
        self.last_error: str | None = None
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """A round every ``interval`` seconds until stopped. A round that fails as a whole (the
        targets could not be read) is logged and retried at the next interval."""
        while not self._stopping:
            started = time.monotonic()
            try:
                await self.round()
                self.failing_since, self.last_error = None, None
            except Exception as error:
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("chain probe round failed: %s", self.last_error, exc_info=True)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def round(self) -> list[tuple[Target, Reading]]:
        """Probe every due target once, at most ``concurrency`` at a time; hand each reading
        to the sink and return them."""
        started = time.monotonic()
        targets = list(await self.targets())
        live = {t.node_id for t in targets}
        for gone in [n for n in self.backoff if n not in live]:
            del self.backoff[gone]
        due = [t for t in targets if self._due(t, started)]
        self.stats.skipped += len(targets) - len(due)
        readings = await asyncio.gather(*(self._probe_and_record(t) for t in due))
        self.stats.rounds += 1
        self.stats.last_round_seconds = time.monotonic() - started
        return list(zip(due, readings, strict=True))

    def _due(self, target: Target, now: float) -> bool:
        state = self.backoff.get(target.node_id)
        if state is None or state.run != target.run:
            self.backoff.pop(target.node_id, None)  # a new container: no back-off
            return True
        return now >= state.due

    async def _probe_and_record(self, target: Target) -> Reading:
        async with self.budget:
            reading = await self.read(target)
        self._note(target, reading)
        await self.sink(target, reading)
        return reading

    def _note(self, target: Target, reading: Reading) -> None:
        outcome = "answering" if reading.answering else "silent"
        self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        if reading.answering:
            self.backoff.pop(target.node_id, None)
            return
        state = self.backoff.get(target.node_id)
        delay = self.interval if state is None else min(self.backoff_max, state.delay * 2)
        self.backoff[target.node_id] = _Backoff(target.run, delay, time.monotonic() + delay)

    async def read(self, target: Target) -> Reading:
        """One probe of one node (no back-off, no sink)."""
        now = datetime.datetime.now(datetime.UTC)
        if not may_dial(target.address, self.networks):
            self.stats.refused += 1
            return Reading(answering=False, at=now, error=(
                f"not probed: {target.address} is outside the probe's allowed ranges "
                "(QAAS_CHAIN_PROBE_NETWORKS)"))  # fmt: skip
        self.stats.probes += 1
        methods = COMMON + BY_CONSENSUS.get(target.consensus, ())
        try:
            replies = await self.rpc.batch(target.url, [(m, []) for m in methods])
        except Unreachable as error:
            return Reading(answering=False, at=now, error=str(error))
        got = dict(zip(methods, replies, strict=True))
        return interpret(got, now)


def interpret(got: dict[str, Reply], at: datetime.datetime) -> Reading:
    """A reading from the replies by method (pure: the recorded-response tests use it too)."""
    head = got["eth_blockNumber"]
    if not head.ok:
        return Reading(answering=False, at=at, error=head.describe())
    enode = _text(got.get("admin_nodeInfo"), "enode")
    node_key = _enode_key(enode)
    raft_id, raft_member = _raft_membership(got.get("raft_cluster"), node_key)
    validators = _value(got.get("istanbul_getValidators"))
    return Reading(
        answering=True,
        at=at,
        block_number=_quantity(_value(head)),
        peer_count=_quantity(_value(got.get("net_peerCount"))),
        syncing=_syncing(got.get("eth_syncing")),
        enode=enode,
        client_version=_string(_value(got.get("web3_clientVersion"))),
        raft_role=_string(_value(got.get("raft_role"))),
        raft_leader=_string(_value(got.get("raft_leader"))),
        raft_id=raft_id,
        raft_member=raft_member,
        validators=tuple(str(v) for v in validators) if isinstance(validators, list) else None,
    )


def _value(reply: Reply | None) -> Any:
    return reply.result if reply is not None and reply.ok else None


def _quantity(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            return None
    return None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(reply: Reply | None, key: str) -> str | None:
    value = _value(reply)
    return _string(value.get(key)) if isinstance(value, dict) else None


def _syncing(reply: Reply | None) -> bool | None:
    if reply is None or not reply.ok:
        return None
    return reply.result is not False and reply.result is not None


def _enode_key(enode: str | None) -> str | None:
    """The public key (hex) of ``enode://<key>@host:port?...``: what raft calls the node ID."""
    if not enode or not enode.startswith("enode://"):
        return None
    return enode[len("enode://") :].split("@", 1)[0].lower() or None


def _raft_membership(reply: Reply | None, node_key: str | None) -> tuple[int | None, bool | None]:
    """(raft ID, member?) from raft_cluster; (None, None) when unknown."""
    cluster = _value(reply)
    if not isinstance(cluster, list) or node_key is None:
        return None, None
    for entry in cluster:
        if isinstance(entry, dict) and str(entry.get("nodeId", "")).lower() == node_key:
            raft_id = entry.get("raftId")
            return (raft_id if isinstance(raft_id, int) else None), True
    return None, False
