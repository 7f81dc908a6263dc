"""How QaaS talks to the apiserver under load and failures: a shared rate budget, a timeout
per request, and retries with exponential backoff and jitter.

Every HTTP request of a ``Cluster`` (retries and watch openings included) first takes a token
from one token bucket (``QAAS_KUBE_QPS`` per second, bursts of ``QAAS_KUBE_BURST``), so a storm
of retries from many callers cannot hammer the apiserver. Each attempt must complete within
``QAAS_KUBE_TIMEOUT_SECONDS``. What is retried, at most ``QAAS_KUBE_RETRIES`` times:

===========================================  ============================  ===================
failure                                      read, list, replace, delete   create
===========================================  ============================  ===================
429, 503 (the server refused the work)       yes                           yes
500, 502, 504                                yes                           no
no connection could be made (nothing sent)   yes                           yes
timeout, connection broken after sending     yes                           no
TLS failure, 4xx                             no                            no
===========================================  ============================  ===================

A create that got a 500 or lost its connection may have happened: repeating it blindly could
only end in a 409, and the caller's 409 handling ("read it, check it is ours, converge") is the
right place to find out, so it gets the error at once. Repeating the others is safe: a replace
carries the resourceVersion it read (a replace that did happen makes the retry a 409), and a
delete carries the uid (a delete that did happen makes the retry a 404, which means "done").
The wait before a retry is the server's ``Retry-After`` (capped at
``QAAS_KUBE_RETRY_AFTER_MAX``), else ``QAAS_KUBE_BACKOFF_SECONDS`` doubling per attempt (at most
8 s) with jitter. ``ClusterStats`` counts requests, retries by reason and throttle waits.

Example::

    caller = Caller(KubeLimits.from_settings(settings))
    body = await caller.call("get", lambda timeout: api.read_namespace("x", ...))
    caller.stats.retries      # Counter({"503": 2})
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio.client.exceptions import ApiException

from app.cluster.errors import ClusterUnavailable, KubeError, from_status
from app.cluster.fence import Fence, NoFence
from app.config import Settings

log = logging.getLogger("qaas.cluster")

# Verbs that may be repeated after a failure that might have taken effect (see the table).
IDEMPOTENT = frozenset({"get", "list", "replace", "delete", "watch", "version"})
# Verbs that change the cluster: each attempt passes the Caller's fence (see fence.py). The
# lease's own renewals use the verb "renew", which the fence never blocks.
FENCED = frozenset({"create", "replace", "delete"})
MAX_BACKOFF = 8.0


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class KubeLimits:
    """The client's retry, timeout and rate settings (defaults: the settings' defaults)."""

    retries: int = _default("kube_retries")
    timeout: float = _default("kube_timeout_seconds")
    qps: float = _default("kube_qps")
    burst: int = _default("kube_burst")
    backoff: float = _default("kube_backoff_seconds")
    retry_after_max: float = _default("kube_retry_after_max")

    @classmethod
    def from_settings(cls, settings: Settings) -> KubeLimits:
        return cls(
            retries=settings.kube_retries,
            timeout=settings.kube_timeout_seconds,
            qps=settings.kube_qps,
            burst=settings.kube_burst,
            backoff=settings.kube_backoff_seconds,
            retry_after_max=settings.kube_retry_after_max,
        )


def decode(body: bytes) -> Any:
    """An API answer's JSON. A pass decodes every StatefulSet of a namespace (30 MB at 10,000
    nodes): orjson, and the cyclic garbage collector paused while a large answer is decoded (it
    makes only acyclic dicts and lists, yet the millions of them set off full collections over
    the whole heap; with the collector on, decoding took three times as long)."""
    if len(body) < LARGE_BODY or not gc.isenabled():
        return orjson.loads(body)
    gc.disable()
    try:
        return orjson.loads(body)
    finally:
        gc.enable()


LARGE_BODY = 1 << 20


@dataclass
class ClusterStats:
    """What a Cluster's client did; for tests, benchmarks and logs."""

    requests: int = 0  # HTTP requests sent, attempts and watch openings included
    retries: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason
    backoff_seconds: float = 0.0  # the total waited before retries
    gave_up: int = 0  # calls that failed after using up their retries
    not_retried: int = 0  # creates that failed in a way only a read-only call may repeat
    throttled: int = 0  # requests that waited for the rate budget
    throttle_seconds: float = 0.0  # the total of those waits

    @property
    def total_retries(self) -> int:
        return sum(self.retries.values())


class RateBudget:
    """A token bucket: ``burst`` tokens, refilled at ``qps`` per second. ``reserve`` takes one
    now (possibly going into debt) and says how long to wait for it: callers are served in the
    order they came, and none waits longer than the debt ahead of it."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    def refund(self) -> None:
        """Give back a token whose request was never sent (its caller was cancelled)."""
        self.tokens = min(self.burst, self.tokens + 1)


def retry_reason(error: KubeError, verb: str) -> str | None:
    """Why ``error`` deserves another attempt of ``verb``, or None (see the module's table)."""
    idempotent = verb in IDEMPOTENT
    if isinstance(error, ClusterUnavailable):
        if error.cause == "connect":
            return "connect"
        return error.cause if idempotent and error.cause in ("timeout", "connection") else None
    if error.status in (429, 503) or (idempotent and error.status in (500, 502, 504)):
        return str(error.status)
    return None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def unavailable(error: BaseException, what: str) -> ClusterUnavailable:
    """Our error for a transport failure, saying how far the request got."""
    if isinstance(error, aiohttp.ClientSSLError):
        cause = "tls"
    elif isinstance(error, aiohttp.ClientConnectorError):
        cause = "connect"
    elif isinstance(error, TimeoutError):
        cause = "timeout"
    else:
        cause = "connection"
    return ClusterUnavailable(f"{what}: {error!r}", cause=cause)


class Caller:
    """Runs API calls for one Cluster under its limits; shared by all of its Resources."""

    def __init__(self, limits: KubeLimits | None = None) -> None:
        self.limits = limits or KubeLimits()
        self.budget = RateBudget(self.limits.qps, self.limits.burst)
        self.stats = ClusterStats()
        self.fence: Fence = NoFence()  # the leader's fence, when leader election is on

    async def call(
        self,
        verb: str,
        call: Callable[[aiohttp.ClientTimeout], Awaitable[Any]],
        *,
        retries: int | None = None,
        raw: bool = False,
    ) -> Any:
        """Run ``call`` (a request made with ``_preload_content=False`` and the given client
        timeout) until it succeeds or may not be retried; returns the decoded JSON body (the
        body's bytes with ``raw``, e.g. a pod's log). ``retries`` overrides the limits' number
        (0: a single attempt). A write (``FENCED``) is refused with ``Fenced`` unless this
        replica leads, and cut if it outlives the lease."""
        if verb not in FENCED:
            return await self._retrying(verb, lambda: self._once(call, raw), retries)

        async def fenced() -> Any:
            async with self.fence.guard():
                return await self._once(call, raw)

        return await self._retrying(verb, fenced, retries)

    async def open_stream(
        self, call: Callable[[aiohttp.ClientTimeout], Awaitable[Any]], read_timeout: float
    ) -> Any:
        """Open a streaming GET (a watch): retried like a read until its headers arrive within
        the timeout; then each read may take ``read_timeout`` (a silent stream is dead)."""
        timeout = aiohttp.ClientTimeout(sock_connect=self.limits.timeout, sock_read=read_timeout)

        async def once() -> Any:
            await self._take_token()
            try:
                async with asyncio.timeout(self.limits.timeout):
                    response = await call(timeout)
                    if response.status < 400:
                        return response
                    body = await response.read()
                    response.close()
            except ApiException as error:
                raise from_status(error.status, error.body, error.reason or "") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                raise unavailable(error, "the Kubernetes API is unreachable") from None
            raise from_status(response.status, body, response.reason or "", _retry_after(response))

        return await self._retrying("watch", once, None)

    async def _once(
        self, call: Callable[[aiohttp.ClientTimeout], Awaitable[Any]], raw: bool = False
    ) -> Any:
        await self._take_token()
        response = None
        try:
            async with asyncio.timeout(self.limits.timeout):
                response = await call(aiohttp.ClientTimeout(total=self.limits.timeout))
                body = await response.read()
        except ApiException as error:
            raise from_status(error.status, error.body, error.reason or "") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise unavailable(error, "the Kubernetes API is unreachable") from None
        finally:
            if response is not None:
                response.close()  # a no-op for the connection once the body is read
        if response.status >= 400:
            raise from_status(response.status, body, response.reason or "", _retry_after(response))
        return body if raw else decode(body)

    async def _take_token(self) -> None:
        wait = self.budget.reserve()
        self.stats.requests += 1
        if wait <= 0:
            return
        self.stats.throttled += 1
        self.stats.throttle_seconds += wait
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self.budget.refund()
            raise

    async def _retrying(
        self, verb: str, attempt: Callable[[], Awaitable[Any]], retries: int | None
    ) -> Any:
        retries = self.limits.retries if retries is None else retries
        for number in range(retries + 1):
            try:
                return await attempt()
            except KubeError as error:
                reason = retry_reason(error, verb)
                if reason is None:
                    if retry_reason(error, "get") is not None:
                        self.stats.not_retried += 1
                    raise
                if number == retries:
                    self.stats.gave_up += 1
                    raise
                self.stats.retries[reason] += 1
                delay = self._delay(number, error.retry_after)
                self.stats.backoff_seconds += delay
                log.info("%s failed (%s); retry %d in %.2fs", verb, error, number + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, number: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.limits.retry_after_max) + random.uniform(0, 0.05)
        ceiling = min(MAX_BACKOFF, self.limits.backoff * 2**number)
        return random.uniform(ceiling / 2, ceiling)
