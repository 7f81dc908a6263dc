"""Build the sandbox's control plane from Debian's packages, once, into a per-version cache.

kube-apiserver, kube-controller-manager and kube-scheduler are compiled from Debian bookworm's
`kubernetes` source package with Debian's golang-1.19; etcd comes from Debian's `etcd-server`.
Everything is fetched through a private apt (see `apt.py`), the build tree lives in a temporary
folder that is removed afterwards (about 3 GB), and the four binaries land in
``~/.cache/qaas/kubernetes-1.20.2/bin``. A cold build takes about 4.5 minutes on 2 cores; later
calls find the cache and return at once.

Example::

    binaries = ensure_binaries(progress=print)
    binaries.apiserver  # Path to kube-apiserver
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.sandbox.apt import PrivateApt, unpack_debs
from app.sandbox.errors import BuildError

KUBERNETES_VERSION = "1.20.2"
GO_PACKAGES = ["golang-1.19-go", "golang-1.19-src"]
# The build's own tools: taken from Debian too, and unpacked privately, so a machine without
# them still builds and the system is left as it was.
BUILD_TOOL_PACKAGES = ["rsync", "libpopt0", "libxxhash0", "jq", "libjq1", "libonig5"]
CONTROL_PLANE = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]

Progress = Callable[[str], None]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/qaas`` (default ``~/.cache/qaas``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qaas"


@dataclass(frozen=True)
class Binaries:
    """The sandbox's executables, all in one cache folder."""

    bin_dir: Path

    @property
    def etcd(self) -> Path:
        return self.bin_dir / "etcd"

    @property
    def apiserver(self) -> Path:
        return self.bin_dir / "kube-apiserver"

    @property
    def controller_manager(self) -> Path:
        return self.bin_dir / "kube-controller-manager"

    @property
    def scheduler(self) -> Path:
        return self.bin_dir / "kube-scheduler"

    def all(self) -> list[Path]:
        return [self.etcd, self.apiserver, self.controller_manager, self.scheduler]

    def complete(self) -> bool:
        return all(path.is_file() and os.access(path, os.X_OK) for path in self.all())


def cached_binaries(version: str = KUBERNETES_VERSION) -> Binaries:
    return Binaries(cache_root() / f"kubernetes-{version}" / "bin")


class _Clock:
    """Reports phases with the time elapsed since the build started."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.start = time.monotonic()

    def say(self, message: str) -> None:
        self.progress(f"[sandbox build {self.elapsed()}] {message}")

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.start)
        return f"{seconds // 60}:{seconds % 60:02d}"


def ensure_binaries(progress: Progress = print, version: str = KUBERNETES_VERSION) -> Binaries:
    """Return the cached binaries, building them first if the cache lacks any."""
    binaries = cached_binaries(version)
    if binaries.complete():
        return binaries
    binaries.bin_dir.parent.mkdir(parents=True, exist_ok=True)
    # Several processes may want the cache at once (test runs side by side): one builds, the
    # others wait for it and then find the cache complete.
    with open(binaries.bin_dir.parent / ".build.lock", "w") as lock:
        if not _try_lock(lock):
            progress(
                f"another process is building the control plane in {binaries.bin_dir}; waiting"
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        if binaries.complete():
            return binaries
        clock = _Clock(progress)
        clock.say(
            f"no cached control plane in {binaries.bin_dir.parent}: building it (about 5 min)"
        )
        # The build tree is large; keep it beside the cache (same disk) and always remove it.
        with tempfile.TemporaryDirectory(prefix="build-", dir=binaries.bin_dir.parent) as tmp:
            _build(Path(tmp), binaries, version, clock)
    clock.say(f"done: binaries in {binaries.bin_dir}")
    return binaries


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build(work: Path, binaries: Binaries, version: str, clock: _Clock) -> None:
    clock.say("reading the Debian package lists (private apt)")
    apt = PrivateApt(work / "apt")
    apt.update()
    debian_version = apt.source_version("kubernetes")
    if f"really{version}" not in debian_version and not debian_version.startswith(version):
        raise BuildError(
            f"the configured Debian mirrors offer kubernetes {debian_version}, not {version}"
        )

    clock.say(f"fetching source kubernetes {debian_version}, Go 1.19, etcd-server")
    dsc = apt.download_source("kubernetes", work / "src")
    tools = work / "tools"
    unpack_debs(
        apt.download([*GO_PACKAGES, "etcd-server", *BUILD_TOOL_PACKAGES], work / "debs"), tools
    )

    clock.say("unpacking the source (with Debian's patches)")
    tree = work / "kubernetes"
    subprocess.run(
        ["dpkg-source", "--no-check", "-x", str(dsc), str(tree)],
        check=True,
        capture_output=True,
    )

    clock.say("compiling kube-apiserver, kube-controller-manager, kube-scheduler")
    _compile(tree, tools, work, clock)

    staging = binaries.bin_dir.with_name("bin.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in CONTROL_PLANE:
        shutil.copy2(tree / "_output" / "bin" / name, staging / name)
    shutil.copy2(tools / "usr" / "bin" / "etcd", staging / "etcd")
    (staging.parent / "VERSION").write_text(f"kubernetes {debian_version}\n")
    # A rename is atomic: a crash mid-copy never leaves a cache that looks complete.
    shutil.rmtree(binaries.bin_dir, ignore_errors=True)
    staging.rename(binaries.bin_dir)
    clock.say("removing the build tree")


def _compile(tree: Path, tools: Path, work: Path, clock: _Clock) -> None:
    goroot = tools / "usr" / "lib" / "go-1.19"
    # Debian's rules build inside a GOPATH that links back to the tree; do the same.
    gopath_link = tree / ".go" / "src" / "k8s.io" / "kubernetes"
    gopath_link.parent.mkdir(parents=True, exist_ok=True)
    gopath_link.symlink_to(Path("../../.."))
    libs = [tools / "usr" / "lib" / "x86_64-linux-gnu", tools / "lib" / "x86_64-linux-gnu"]
    env = {
        **os.environ,
        "GOROOT": str(goroot),
        "GOPATH": str(tree / ".go"),
        "GOCACHE": str(work / "gocache"),
        "GOFLAGS": "-mod=vendor",
        "CGO_ENABLED": "0",
        "HOME": str(work),
        "PATH": f"{goroot / 'bin'}:{tools / 'usr' / 'bin'}:{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": ":".join(str(p) for p in libs),
    }
    log = work / "make.log"
    what = " ".join(f"cmd/{name}" for name in CONTROL_PLANE)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", f"WHAT={what}"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        stop = threading.Event()
        ticker = threading.Thread(target=_tick, args=(clock, log, stop), daemon=True)
        ticker.start()
        try:
            code = proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise BuildError("compiling the control plane failed:\n" + "\n".join(tail))


def _tick(clock: _Clock, log: Path, stop: threading.Event) -> None:
    """Every 20 s, say the build is alive and what it is compiling."""
    while not stop.wait(20):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        current = next((line for line in reversed(lines) if line and not line.startswith("+")), "")
        clock.say(f"still compiling ({current or 'starting'})")
