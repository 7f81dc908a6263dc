"""``kubectl logs`` reaches the kubelet's HTTPS endpoint through the apiserver, as in a cluster."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

from app.sandbox.pki import KUBELET_CLIENT_NAME, issue_certificate, write_credentials
from tests.helpers import eventually
from tests.sandbox.process_node import ProcessNode, needs_kubectl, pki_dir_of, process_node

__all__ = ["process_node"]  # the fixture
pytestmark = needs_kubectl


async def _logs(node: ProcessNode, *args: str) -> str:
    result = await asyncio.to_thread(node.kubectl, "logs", *args)
    return result.stdout


async def test_kubectl_logs_shows_the_output_and_tails_it(process_node: ProcessNode) -> None:
    node = process_node
    await node.create(
        node.pod("talker", ["sh", "-c", "echo hello; echo two; echo three; sleep 3600"])
    )
    await node.create(node.pod("grumbler", ["sh", "-c", "echo to-stderr >&2; sleep 3600"]))
    await node.running_ready("talker")

    async def all_lines(pod: str, count: int) -> str | None:
        out = await _logs(node, pod)
        return out if out.count("\n") == count else None

    assert await eventually(lambda: all_lines("talker", 3)) == "hello\ntwo\nthree\n"
    assert await eventually(lambda: all_lines("grumbler", 1)) == "to-stderr\n"
    assert await _logs(node, "talker", "--tail=1") == "three\n"
    assert await _logs(node, "talker", "--tail=2") == "two\nthree\n"
    stamped = (await _logs(node, "talker", "--timestamps")).splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z hello", stamped[0])


async def test_kubectl_logs_follow_streams_new_lines(process_node: ProcessNode) -> None:
    node = process_node
    script = "echo first; while [ ! -f go ]; do sleep 0.1; done; echo second; sleep 3600"
    pod = await node.create(node.pod("stream", ["sh", "-c", script]))
    await node.running_ready("stream")
    follower = await asyncio.create_subprocess_exec(
        *node.kubectl_argv("logs", "-f", "stream"), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert follower.stdout is not None
        assert await asyncio.wait_for(follower.stdout.readline(), 15) == b"first\n"
        (node.root(pod["uid"]) / "go").touch()
        assert await asyncio.wait_for(follower.stdout.readline(), 15) == b"second\n"
    finally:
        follower.kill()
        await follower.wait()


async def test_previous_shows_the_instance_before_the_restart(process_node: ProcessNode) -> None:
    node = process_node
    script = "if [ -f ran ]; then echo second; sleep 3600; else touch ran; echo first; exit 1; fi"
    await node.create(node.pod("twice", ["sh", "-c", script]))
    await node.until_container("twice", lambda c: c.restart_count == 1 and c.ready)

    async def current() -> str | None:
        return out if (out := await _logs(node, "twice")) else None

    assert await eventually(current) == "second\n"
    assert await _logs(node, "twice", "--previous") == "first\n"


async def test_a_simulated_pod_has_an_empty_log(process_node: ProcessNode) -> None:
    node = process_node
    manifest = {
        "metadata": {"name": "ghost"},
        "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "busybox"}]},
    }
    await node.create(manifest)
    await node.running_ready("ghost")
    assert await _logs(node, "ghost") == ""


async def test_the_endpoint_serves_only_the_apiservers_client_certificate(
    process_node: ProcessNode, tmp_path: Path
) -> None:
    node = process_node
    await node.create(node.pod("secret", ["sh", "-c", "echo private; sleep 3600"]))
    await node.running_ready("secret")
    assert node.kubelet.server is not None
    port = node.kubelet.server.port
    pki = pki_dir_of(node.kubeconfig)
    path = f"/containerLogs/{node.namespace}/secret/main"

    async def get(cert: tuple[Path, Path] | None) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.check_hostname = False  # the server's SANs are the node's name and IP
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
        except (ssl.SSLError, ConnectionError):
            return 0, b""  # refused in the TLS handshake (with TLS 1.3: at the first read)
        head, _, body = answer.partition(b"\r\n\r\n")
        return (int(head.split()[1]) if head else 0), body

    client_cert = (pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")

    async def served() -> bool:
        status, body = await get(client_cert)
        return status == 200 and body == b"private\n"

    assert await eventually(served)
    assert (await get(None))[0] == 401
    other = issue_certificate(pki, "someone-else", tmp_path, client=True)
    assert (await get(other))[0] == 403
    foreign = write_credentials(tmp_path / "foreign", "10.96.0.1")  # another CA altogether
    stranger = issue_certificate(foreign.pki_dir, KUBELET_CLIENT_NAME, tmp_path, client=True)
    assert await get(stranger) == (0, b"")
