"""Leader election on a ``coordination.k8s.io/v1`` Lease, with a fence (``fence.py``).

Every replica runs a ``LeaseElector`` on the same Lease in QaaS's namespace. A follower reads
the Lease every retry period and takes it when it is free (no holder: released on shutdown) or
when its record has not changed for a whole lease duration, as measured by the follower itself
on its monotonic clock (so no two clocks are compared). The leader renews it every retry
period. A take or a renewal is a PUT carrying the resourceVersion it read, so of two replicas
trying at once exactly one wins (the other gets a 409). ``leaseTransitions`` counts the terms:
it is the history a rollout test reads.

Why not ``kubernetes_asyncio.leaderelection``, which kubernetes-asyncio ships: an error other
than an ``ApiException`` (the API server unreachable, a timeout) escapes its renew loop without
cancelling the leader's work, so a replica cut off from the API server keeps leading; a single
renewal is not bounded in time, so its renew deadline is not a deadline; it reads wall-clock
time, and writes local times with a ``Z``. This one bounds each attempt by the time left on the
fence, counts a failure of any kind as a failed renewal, and keeps time on ``time.monotonic()``.

Example::

    elector = LeaseElector(cluster, "qaas-control", "pod-a", lease_seconds=15,
                           renew_deadline=10, retry_period=2)
    task = asyncio.create_task(elector.run(on_started, on_stopped))
    elector.is_leader        # also cluster.caller.fence: writes pass only while this is True
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

from app.cluster.client import Cluster, Obj
from app.cluster.errors import Conflict, KubeError, NotFound
from app.cluster.fence import Fence

log = logging.getLogger("qaas.leader")

Callback = Callable[[], Awaitable[None]]


def _now() -> str:
    """A Lease's MicroTime: UTC with microseconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        cluster: Cluster,
        name: str,
        identity: str,
        *,
        lease_seconds: float,
        renew_deadline: float,
        retry_period: float,
    ) -> None:
        if not retry_period < renew_deadline < lease_seconds:
            raise ValueError("need retry period < renew deadline < lease duration")
        self.cluster, self.name, self.identity = cluster, name, identity
        self.namespace = cluster.namespace
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.fence = Fence()
        cluster.caller.fence = self.fence  # every cluster write now passes this fence
        self._api = client.CoordinationV1Api(cluster.api_client)
        self._observed: tuple[Any, ...] | None = None  # the other holder's record, as last read
        self._observed_at = 0.0  # monotonic time it was first read in this form
        self._stopping = asyncio.Event()
        self.holder: str | None = None  # the holder as last read ("" when free)
        self.last_error: str | None = None

    @property
    def is_leader(self) -> bool:
        return self.fence.open

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, on_started: Callback, on_stopped: Callback, leading: bool = False) -> None:
        """Elect until ``stop``; ``on_started`` when this replica gains the lease,
        ``on_stopped`` when it loses it (before the lease may expire for others) or stops.
        ``leading``: a first ``step`` made this replica the leader already. On stop, a leader
        releases the lease so that the next replica takes it at once."""
        try:
            while not self._stopping.is_set():
                try:
                    leading = await self.step(leading, on_started, on_stopped)
                except Exception:  # a bug: never lead on without knowing it holds the lease
                    log.exception("lease %s: the election step failed", self.name)
                    self.fence.revoke()
                    if leading:
                        leading = False
                        await on_stopped()
                wait = self.retry_period * (1.0 if leading else random.uniform(1.0, 1.2))
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
                except TimeoutError:
                    pass
        finally:
            was_open = self.fence.open
            self.fence.revoke()
            if leading or was_open:
                await on_stopped()
                await self.release()

    async def step(self, leading: bool, on_started: Callback, on_stopped: Callback) -> bool:
        """One try to take or renew; returns whether this replica leads afterwards."""
        if leading and not self.fence.open:  # no renewal succeeded within the renew deadline
            return await self._lose(on_stopped)
        began = time.monotonic()
        # A renewal may not outlast the fence: the leader must know it lost before it closes.
        budget = max(0.05, self.fence.left()) if leading else self.renew_deadline
        try:
            async with asyncio.timeout(budget):
                held = await self._try()
            self.last_error = None
        except (KubeError, TimeoutError) as error:
            held = False
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("lease %s: %s", self.name, self.last_error)
        if held:
            self.fence.grant(began, self.renew_deadline, self.lease_seconds)
            if not leading:
                log.warning("%s leads (lease %s/%s, term %d)", self.identity, self.namespace,
                            self.name, self.fence.epoch)  # fmt: skip
                await on_started()
            return True
        if leading and (self.holder not in (None, self.identity) or not self.fence.open):
            return await self._lose(on_stopped)
        return leading

    async def _lose(self, on_stopped: Callback) -> bool:
        self.fence.revoke()
        log.warning("%s lost the lease %s (holder now: %s)", self.identity, self.name,
                    self.holder or "unknown")  # fmt: skip
        await on_stopped()
        return False

    async def _try(self) -> bool:
        """Take the lease if free or expired, renew it if ours; False if another holds it."""
        try:
            lease = await self._call("get", lambda t: self._api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=t))  # fmt: skip
        except NotFound:
            return await self._create()
        read_at = time.monotonic()  # the record's renewal began before this, on any clock
        spec: Obj = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self.holder = holder
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            # Counted from when the answer arrived, not when it was asked for: the holder's
            # renewal may have landed while the read was under way.
            self._observed, self._observed_at = record, read_at
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if read_at - self._observed_at < duration:
                return False  # held, and renewed within the last lease duration we saw
        now = _now()
        if holder != self.identity:  # a new term
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if holder or spec.get("renewTime") else 0
            )
        spec.update(holderIdentity=self.identity, renewTime=now,
                    leaseDurationSeconds=round(self.lease_seconds))  # fmt: skip
        lease["spec"] = spec
        try:
            await self._call("renew", lambda t: self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _preload_content=False,
                _request_timeout=t))  # fmt: skip
        except Conflict:
            return False  # another replica wrote it first
        self.holder = self.identity
        return True

    async def _create(self) -> bool:
        now = _now()
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "labels": {"app.kubernetes.io/name": "qaas"}},
            "spec": {"holderIdentity": self.identity, "acquireTime": now, "renewTime": now,
                     "leaseDurationSeconds": round(self.lease_seconds), "leaseTransitions": 0},
        }  # fmt: skip
        try:
            await self._call("renew", lambda t: self._api.create_namespaced_lease(
                self.namespace, body, _preload_content=False, _request_timeout=t))  # fmt: skip
        except Conflict:
            return False
        self.holder = self.identity
        return True

    async def release(self) -> None:
        """Give the lease up (holder emptied) so that another replica takes it at once; the
        fence is closed first. Best effort: a lease not released expires."""
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self._call("get", lambda t: self._api.read_namespaced_lease(
                    self.name, self.namespace, _preload_content=False,
                    _request_timeout=t))  # fmt: skip
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return
                spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_now())
                await self._call("renew", lambda t: self._api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _preload_content=False,
                    _request_timeout=t))  # fmt: skip
                log.info("%s released the lease %s", self.identity, self.name)
        except (KubeError, TimeoutError) as error:
            log.warning("lease %s not released (%s): it expires by itself", self.name, error)

    async def _call(self, verb: str, call: Callable[[Any], Awaitable[Any]]) -> Obj:
        result: Obj = await self.cluster.caller.call(verb, call, retries=0)
        return result
