"""A fault-injecting HTTP proxy in front of the sandbox's kube-apiserver (tests only).

The proxy listens on loopback in plain HTTP, forwards every request (method, path, query,
headers with the bearer token, body) to the real apiserver over TLS verified with the sandbox's
CA, and streams answers back chunk by chunk, so watches stay long-lived streams. Rules decide,
request by request and from a seeded ``random.Random``, which faults to inject:

=========  ==================================================================================
``status``   answer a Kubernetes ``Status`` with ``status`` (500, 503, 429...), with
             ``Retry-After: retry_after`` when set; the apiserver never sees the request
``latency``  wait ``delay`` seconds, then go on (later rules still apply, then forward)
``timeout``  hold the request ``delay`` seconds, then drop the connection without answering
``gone``     a watch gets a 200 stream carrying one ``ERROR`` event with a 410 ``Expired``
             Status (exactly what the apiserver sends for a too old resourceVersion) and
             ends; any other request gets an HTTP 410 with that Status
``cut``      watches only: forward, then drop the connection right after ``after_events``
             events (counted when the cut happens; a stream that ends sooner is not cut)
=========  ==================================================================================

Rules are tried in order; ``latency`` and ``cut`` combine with what follows, the first
``status``/``timeout``/``gone`` that fires answers the request. ``times`` bounds how often a
rule fires (None: no bound), e.g. ``Rule("status", 1.0, status=503, times=2)`` fails the first
two matching requests only. ``Accept-Encoding`` is not forwarded, so answers come back
uncompressed and the proxy can count watch events (one JSON object per line).

Example::

    proxy = FaultProxy("https://127.0.0.1:6443", ca_file, [Rule("status", 0.2, status=503)])
    url = await proxy.start()                  # http://127.0.0.1:<port>
    proxy.kubeconfig(tmp_path / "kubeconfig", token)
    ...
    proxy.rules = []                           # may be replaced while running
    await proxy.stop()
    proxy.injected                             # Counter({"status:503": 7})
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from yarl import URL

# Hop-by-hop headers (RFC 9110 7.6.1) and what aiohttp computes itself are not copied.
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
_REASONS = {
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Rule:
    kind: str  # "status" | "latency" | "timeout" | "gone" | "cut"
    probability: float  # 0..1, drawn per matching request from a seeded random.Random
    methods: frozenset[str] = frozenset()  # empty: any; e.g. {"POST", "PUT"}
    path: str = ""  # regex searched in the request path; "" matches all
    watch: bool | None = None  # True: only watch requests, False: only non-watch
    status: int = 500  # for kind="status": 500, 503 or 429
    retry_after: float | None = None  # seconds, sent as Retry-After (for 429/503)
    delay: float = 0.0  # "latency": added before forwarding; "timeout": held, then dropped
    after_events: int = 3  # for "cut": close the watch stream after this many events
    times: int | None = None  # fire at most this many times (None: unbounded)


def status_object(code: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    """A ``v1 Status`` as the apiserver writes it."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if retry_after is not None:
        status["details"] = {"retryAfterSeconds": max(1, round(retry_after))}
    return status


class FaultProxy:
    def __init__(
        self, upstream: str, ca_file: Path, rules: list[Rule] | None = None, seed: int = 0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.rules: list[Rule] = list(rules or [])
        self.random = random.Random(seed)
        self.injected: collections.Counter[str] = collections.Counter()
        self.forwarded = 0
        self.url = ""
        self._fired: dict[int, tuple[Rule, int]] = {}  # id(rule) -> (rule kept alive, count)
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Listen on 127.0.0.1 on a free port; returns the proxy's URL."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            read_bufsize=2**21,
        )
        server = web.Server(self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def kubeconfig(self, path: Path, token: str) -> Path:
        """A kubeconfig whose server is this proxy (plain HTTP), with ``token``."""
        assert self.url, "start() the proxy first"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fault-proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [
                {"name": "fault-proxy", "context": {"cluster": "fault-proxy", "user": "admin"}}
            ],
            "current-context": "fault-proxy",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- deciding ---------------------------------------------------------------------------

    def _fires(self, rule: Rule, request: web.BaseRequest, watch: bool) -> bool:
        if rule.methods and request.method not in rule.methods:
            return False
        if rule.path and not re.search(rule.path, request.path):
            return False
        if rule.watch is not None and rule.watch != watch:
            return False
        if rule.kind == "cut" and not watch:
            return False
        _, count = self._fired.get(id(rule), (rule, 0))
        if rule.times is not None and count >= rule.times:
            return False
        if self.random.random() >= rule.probability:
            return False
        self._fired[id(rule)] = (rule, count + 1)
        return True

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        watch = request.query.get("watch", "").lower() in ("true", "1")
        cut_after: int | None = None
        for rule in list(self.rules):
            if not self._fires(rule, request, watch):
                continue
            if rule.kind == "latency":
                self.injected["latency"] += 1
                await asyncio.sleep(rule.delay)
            elif rule.kind == "cut":
                cut_after = rule.after_events
            elif rule.kind == "status":
                self.injected[f"status:{rule.status}"] += 1
                return self._status(rule.status, "injected by the fault proxy", rule.retry_after)
            elif rule.kind == "gone":
                self.injected["gone"] += 1
                return await self._gone(request, watch)
            elif rule.kind == "timeout":
                self.injected["timeout"] += 1
                await asyncio.sleep(rule.delay)
                return self._drop(request, web.Response())
            else:
                raise ValueError(f"unknown fault kind {rule.kind!r}")
        return await self._forward(request, body, cut_after)

    # -- answering --------------------------------------------------------------------------

    @staticmethod
    def _status(code: int, message: str, retry_after: float | None) -> web.Response:
        response = web.json_response(status_object(code, message, retry_after), status=code)
        if retry_after is not None:
            response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    async def _gone(self, request: web.BaseRequest, watch: bool) -> web.StreamResponse:
        version = request.query.get("resourceVersion", "")
        newer = int(version) + 1 if version.isdigit() else 1
        message = f"too old resource version: {version or 0} ({newer})"
        if not watch:
            return self._status(410, message, None)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        await response.prepare(request)
        event = {"type": "ERROR", "object": status_object(410, message)}
        await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response

    @staticmethod
    def _drop(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
        """Close the client's connection (what is already written is flushed first); aiohttp
        then fails to finish ``response`` and takes it as a client that went away."""
        if request.transport is not None:
            request.transport.close()
        return response

    async def _forward(
        self, request: web.BaseRequest, body: bytes, cut_after: int | None
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _HOP and name.lower() != "accept-encoding"
        }
        url = URL(self.upstream + request.raw_path, encoded=True)
        self.forwarded += 1
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as error:
            return self._status(502, f"the fault proxy cannot reach the apiserver: {error}", None)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    response.headers.add(name, value)
            if upstream.content_length is not None and cut_after is None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            events = 0
            async for chunk in upstream.content.iter_any():
                if cut_after is not None and events + chunk.count(b"\n") >= cut_after:
                    end = -1
                    for _ in range(cut_after - events):
                        end = chunk.index(b"\n", end + 1)
                    await response.write(chunk[: end + 1])
                    self.injected["cut"] += 1
                    return self._drop(request, response)
                events += chunk.count(b"\n")
                await response.write(chunk)
            await response.write_eof()
        return response
