"""A pod's process dies with the kubelet's process and runs in the pod's network namespace."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sandbox.images import REPO
from app.sandbox.podenv import spawn
from tests.sandbox.process_node import all_gone

KUBELET_STAND_IN = """
import asyncio
from pathlib import Path
from app.sandbox.podenv import spawn

async def main() -> None:
    proc = await spawn(["sleep", "3600"], env={"PATH": "/usr/bin:/bin"}, cwd=Path("/"),
                       netns=None, stdout=asyncio.subprocess.DEVNULL,
                       stderr=asyncio.subprocess.DEVNULL)
    print(proc.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_pod_process_dies_when_the_kubelets_process_is_killed() -> None:
    kubelet = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KUBELET_STAND_IN, cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    assert kubelet.stdout is not None
    child = int(await asyncio.wait_for(kubelet.stdout.readline(), 30))
    try:
        assert os.getsid(child) == child  # a session of its own: not killed as our group
        kubelet.send_signal(signal.SIGKILL)  # no cleanup code runs
        await kubelet.wait()
        assert await all_gone([child]), "the pod's process outlived the kubelet"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own (loopback only, no routes), removed afterwards."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2")
    name = f"qrt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


async def test_a_process_runs_in_the_given_network_namespace(netns: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    proc = await spawn(["readlink", "/proc/self/ns/net"], env=env, cwd=tmp_path, netns=netns)
    out, _ = await proc.communicate()
    inode = os.stat(f"/run/netns/{netns}").st_ino
    assert out.decode().strip() == f"net:[{inode}]"
    assert os.readlink("/proc/self/ns/net") != f"net:[{inode}]"
