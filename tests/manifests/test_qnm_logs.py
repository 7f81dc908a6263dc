"""The QNM image's entrypoint, manifests/qnm/qnm-logs, run here with a fake QNM.

The fake is a shell script that writes QNM's three log files in its working directory, in steps
the test releases one at a time (a ``go-N`` file), so each check waits on what the wrapper has
printed, never on a clock. No image is built: the script is the image's, byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.manifests.conftest import ROOT

QNM_LOGS = ROOT / "manifests" / "qnm" / "qnm-logs"

# A fake QNM: its own stdout line, the files appearing at different times, a rotation of
# gethNode.log (renamed, a new one made), SIGTERM answered with exit 7, else exit $1.
FAKE_QNM = """#!/bin/sh
step() { while [ ! -e "go-$1" ]; do sleep 0.05; done; }
trap 'echo "geth saw SIGTERM" >> gethNode.log; exit 7' TERM
echo "qnm: own stdout"
echo "geth first" > gethNode.log
echo "constellation first" > constellation.log
step 1
mv gethNode.log gethNode.log.1
echo "geth after rotation" > gethNode.log
echo "comm appeared later" > communicationNode.log
step 2
echo "geth last words" >> gethNode.log
exit "$1"
"""


class Wrapped:
    """qnm-logs running the fake in ``folder``; its stdout lines, gathered as they come."""

    def __init__(self, folder: Path, *args: str) -> None:
        fake = folder / "fake-qnm"
        fake.write_text(FAKE_QNM)
        fake.chmod(0o755)
        self.folder = folder
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(QNM_LOGS), "./fake-qnm", *args],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, for the clean-up
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, *lines: str, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(line in self.lines for line in lines):
                return
            time.sleep(0.05)
        raise AssertionError(f"{lines} not all printed within {within}s: {self.lines}")

    def release(self, step: int) -> None:
        (self.folder / f"go-{step}").touch()

    def finish(self, within: float = 15.0) -> int:
        code = self.process.wait(timeout=within)
        self._reader.join(timeout=within)
        return code


@pytest.fixture
def wrapped() -> Iterator[list[Wrapped]]:
    """The wrappers a test starts; any still running at its end (a failed test) are killed,
    with their fake, by their own process group."""
    started: list[Wrapped] = []
    yield started
    for each in started:
        if each.process.poll() is None:
            os.killpg(each.process.pid, signal.SIGKILL)
            each.process.wait()


def test_every_log_file_reaches_stdout_prefixed_and_the_exit_code_is_qnms(
    tmp_path: Path, wrapped: list[Wrapped]
) -> None:
    run = Wrapped(tmp_path, "3")
    wrapped.append(run)
    run.wait_for("qnm: own stdout", "[geth] geth first", "[constellation] constellation first")
    run.release(1)
    # The renamed file's successor and a file that appeared after the start are followed.
    run.wait_for("[geth] geth after rotation", "[comm] comm appeared later")
    run.release(2)
    assert run.finish() == 3
    # Its followers ended before it did (in a container, PID 1's end kills what is left), and
    # what QNM wrote just before it ended was printed.
    with pytest.raises(ProcessLookupError):
        os.killpg(run.process.pid, 0)
    assert "[geth] geth last words" in run.lines
    assert sorted(run.lines) == sorted([
        "qnm: own stdout",
        "[geth] geth first",
        "[constellation] constellation first",
        "[geth] geth after rotation",
        "[comm] comm appeared later",
        "[geth] geth last words",
    ])  # fmt: skip


def test_sigterm_reaches_qnm_and_its_exit_code_is_the_wrappers(
    tmp_path: Path, wrapped: list[Wrapped]
) -> None:
    run = Wrapped(tmp_path, "0")
    wrapped.append(run)
    run.wait_for("[geth] geth first")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 7  # the fake's answer to SIGTERM, not the wrapper's own death
    assert "[geth] geth saw SIGTERM" in run.lines


def test_a_command_killed_by_a_signal_exits_128_plus_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(QNM_LOGS), "sh", "-c", "kill -KILL $$"], cwd=tmp_path, capture_output=True,
        timeout=15,
    )  # fmt: skip
    assert done.returncode == 128 + signal.SIGKILL


def test_files_left_by_an_earlier_run_are_not_replayed(tmp_path: Path) -> None:
    (tmp_path / "gethNode.log").write_text("geth of the previous container\n")
    done = subprocess.run(
        [str(QNM_LOGS), "sh", "-c", "echo 'geth of this one' >> gethNode.log"],
        cwd=tmp_path, capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["[geth] geth of this one"]


def test_without_a_command_it_says_how_to_call_it(tmp_path: Path) -> None:
    done = subprocess.run([str(QNM_LOGS)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 64
    assert "usage: qnm-logs COMMAND" in done.stderr
