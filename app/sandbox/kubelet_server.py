"""The kubelet's HTTPS endpoint: what the apiserver calls for ``pods/log`` (``kubectl logs``).

``GET /containerLogs/{namespace}/{pod}/{container}`` with the kubelet's query parameters
``follow``, ``previous``, ``timestamps``, ``tailLines``, ``limitBytes``, ``sinceSeconds`` and
``sinceTime``. A simulated pod answers an empty log; an unknown one 404, a missing previous
instance 400 (as a kubelet does).

TLS as in a cluster: the server presents a certificate signed by the sandbox CA (SANs: node name
and IP); a client must present a certificate signed by that CA (the TLS handshake refuses any
other), and only the apiserver's kubelet client identity (``KUBELET_CLIENT_NAME``) is served:
no certificate is 401, another identity 403.

Example::

    server = KubeletServer(store, host="127.0.0.1", port=0, cert=crt, key=key, ca=ca_crt)
    port = await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
from pathlib import Path

from aiohttp import web

from app.sandbox.logs import LogStore, ReadOptions
from app.sandbox.pki import KUBELET_CLIENT_NAME

log = logging.getLogger(__name__)
_TRUE = ("true", "1")


def _identity(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def _options(query: dict[str, str]) -> ReadOptions:
    since: datetime.datetime | None = None
    if query.get("sinceSeconds"):
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            seconds=int(query["sinceSeconds"])
        )
    elif query.get("sinceTime"):
        since = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
    return ReadOptions(
        tail=int(query["tailLines"]) if query.get("tailLines") else None,
        timestamps=query.get("timestamps", "").lower() in _TRUE,
        since=since,
        limit_bytes=int(query["limitBytes"]) if query.get("limitBytes") else None,
    )


class KubeletServer:
    """Serves the container logs of ``store`` over mutually authenticated TLS."""

    def __init__(
        self, store: LogStore, *, host: str, port: int, cert: Path, key: Path, ca: Path
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))
        # OPTIONAL: a presented certificate must verify; a missing one is answered with a 401.
        self.context.verify_mode = ssl.CERT_OPTIONAL
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> int:
        """Listen; returns the port (useful with ``port=0``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self.context).start()
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        who = _identity(request)
        if who is None:
            return web.Response(status=401, text="Unauthorized: a client certificate is needed\n")
        if who != KUBELET_CLIENT_NAME:
            return web.Response(status=403, text=f"Forbidden: {who!r} may not read logs\n")
        namespace, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        query = dict(request.query)
        try:
            options = _options(query)
        except ValueError as error:
            return web.Response(status=400, text=f"bad query: {error}\n")
        found = self.store.find(namespace, pod, name)
        if found is None:
            return web.Response(
                status=404, text=f"container {name} of pod {namespace}/{pod} is not on this node\n"
            )
        if isinstance(found, str):
            return web.Response(body=b"", content_type="text/plain")
        previous = query.get("previous", "").lower() in _TRUE
        if previous and not found.has_previous():
            return web.Response(
                status=400,
                text=f'previous terminated container "{name}" in pod "{pod}" not found\n',
            )
        if previous or query.get("follow", "").lower() not in _TRUE:
            body = found.read(options, previous=previous)
            return web.Response(body=body, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            async for chunk in found.follow(options):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            log.debug("a log follower of %s/%s went away", namespace, pod)
        return response
