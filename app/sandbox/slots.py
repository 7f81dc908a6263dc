"""Sandbox slots: the address ranges and host names one sandbox uses, so several run side by side.

A slot is a number k in 0..15. Slot k owns, on the host:

=========================  ==================================================================
pod range                  ``10.244.(16k).0/20``; node i (i < 16) gets ``10.244.(16k+i).0/24``
Service range              ``10.96.(16k).0/20`` (first address: the ``kubernetes`` Service)
node InternalIPs           ``172.30.k.(10+i)``
bridge                     ``qsbx<k>``, holding the pods' gateway ``10.244.(16k).1``
pod network namespaces     ``qsbx<k>-<12 hex of the pod uid>``
veth host ends             ``qv<k>-<8 hex of the pod uid>``
nftables table             ``ip qaas_sbx<k>``
=========================  ==================================================================

A supervisor claims a slot at start: the file ``<directory>/<k>`` names its pid and the pid's
start time (so a recycled pid does not keep a slot busy), created atomically by ``link(2)``, which
fails if the file exists. A slot whose owner is gone is stale. Claiming takes a lock on the
directory, removes whatever the owners of stale slots left (after a ``kill -9`` nothing else
would: network namespaces and the processes in them, links, the bridge, the nftables table, the
slot's routes), cleans the slot it takes and only then writes the claim. So a sandbox killed
with -9 leaves nothing behind after the next start, whichever slot that start gets.

Without root the slots live in a per-user folder; nothing of the host is touched then (the pod
network needs root and stays off, see `app.sandbox.podnet`).

Example::

    slot = claim()          # the lowest free slot, cleaned
    slot.node_cidr(0)       # "10.244.16.0/24" for slot 1
    ...
    clean(slot)             # remove the slot's host objects
    release(slot)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.processes import pid_alive

log = logging.getLogger("qaas.sandbox")

SLOTS = 16
NODES_PER_SLOT = 16
POD_RANGE = "10.244.0.0/16"  # every slot's pods; routes.RouteGuard keeps it off the default route
SERVICE_RANGE = "10.96.0.0/16"
NODE_RANGE = "172.30.0.0/16"
SYSTEM_DIRECTORY = Path("/run/qaas-sandbox/slots")


class SlotError(RuntimeError):
    """No slot is free (16 sandboxes run), or the slots folder cannot be used."""


@dataclass(frozen=True)
class Slot:
    index: int
    directory: Path = SYSTEM_DIRECTORY

    def __post_init__(self) -> None:
        if not 0 <= self.index < SLOTS:
            raise ValueError(f"slot {self.index} is not in 0..{SLOTS - 1}")

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{16 * self.index}.0/20"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{16 * self.index}.0/20"

    @property
    def node_range(self) -> str:
        return f"172.30.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        """The bridge's address: the pods' gateway to the Service range."""
        return f"10.244.{16 * self.index}.1"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.96.{16 * self.index}.1"

    @property
    def bridge(self) -> str:
        return f"qsbx{self.index}"

    @property
    def table(self) -> str:
        return f"qaas_sbx{self.index}"

    @property
    def netns_prefix(self) -> str:
        return f"qsbx{self.index}-"

    @property
    def veth_prefix(self) -> str:
        return f"qv{self.index}-"

    def node_cidr(self, node: int) -> str:
        self._check_node(node)
        return f"10.244.{16 * self.index + node}.0/24"

    def node_ip(self, node: int) -> str:
        self._check_node(node)
        return f"172.30.{self.index}.{10 + node}"

    def netns(self, uid: str) -> str:
        return f"{self.netns_prefix}{uid.replace('-', '')[:12]}"

    def veth(self, uid: str) -> str:
        return f"{self.veth_prefix}{uid.replace('-', '')[:8]}"

    @staticmethod
    def _check_node(node: int) -> None:
        if not 0 <= node < NODES_PER_SLOT:
            raise ValueError(f"a sandbox has at most {NODES_PER_SLOT} nodes (asked for {node})")


def default_directory() -> Path:
    """Where slots are claimed: a system folder for root, a per-user one otherwise."""
    if os.geteuid() == 0:
        return SYSTEM_DIRECTORY
    return Path(tempfile.gettempdir()) / f"qaas-sandbox-{os.geteuid()}" / "slots"


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), "" if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _owner_alive(claim: Path) -> bool:
    try:
        words = claim.read_text().split()
    except FileNotFoundError:
        return False
    if not words or not words[0].isdigit():
        return False
    pid = int(words[0])
    started = words[1] if len(words) > 1 else ""
    return pid_alive(pid) and (not started or started == _start_time(pid))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def claim(directory: Path | None = None, owner: int | None = None) -> Slot:
    """Claim the lowest slot not held by a live process, after removing its leftovers."""
    directory = directory or default_directory()
    owner = owner or os.getpid()
    try:
        with _locked(directory):
            for index in range(SLOTS):  # every stale slot is cleaned, not only the one claimed
                path = directory / str(index)
                if path.exists() and not _owner_alive(path):
                    clean(Slot(index, directory))
                    path.unlink()
            for index in range(SLOTS):
                path = directory / str(index)
                if path.exists():
                    continue
                slot = Slot(index, directory)
                clean(slot)  # leftovers without a claim file (e.g. a claim removed by hand)
                tmp = directory / f".{index}.{owner}"
                tmp.write_text(f"{owner} {_start_time(owner)}\n")
                try:
                    os.link(tmp, path)  # atomic; fails if the file exists
                finally:
                    tmp.unlink()
                return slot
    except OSError as error:
        raise SlotError(f"cannot claim a sandbox slot in {directory}: {error}") from error
    raise SlotError(f"all {SLOTS} sandbox slots in {directory} are held by running sandboxes")


def release(slot: Slot, owner: int | None = None) -> None:
    """Give the slot back if ``owner`` (default: this process) holds it."""
    owner = owner or os.getpid()
    path = slot.directory / str(slot.index)
    with _locked(slot.directory):
        try:
            words = path.read_text().split()
        except FileNotFoundError:
            return
        if words and words[0] == str(owner):
            path.unlink()


def holder(slot: Slot) -> int | None:
    """The pid holding ``slot`` if it is alive."""
    path = slot.directory / str(slot.index)
    if not _owner_alive(path):
        return None
    return int(path.read_text().split()[0])


# -- the slot's objects on the host --------------------------------------------------------------


def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """Run a command (``ip``, ``nft``); its stdout. Errors carry the command's stderr."""
    done = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done.stdout


def can_manage_host() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def held(slot: Slot) -> bool:
    """Whether a sandbox alive now holds ``slot``."""
    return _owner_alive(slot.directory / str(slot.index))


def leftovers(slot: Slot) -> list[str]:
    """What of ``slot`` exists on the host: netns, links, nftables table, routes (for tests)."""
    if not can_manage_host():
        return []
    found = [f"netns {name}" for name in _netns(slot)]
    found += [f"link {name}" for name in _links(slot)]
    if shutil.which("nft") and run("nft", "list", "table", "ip", slot.table, check=False):
        found.append(f"nft table ip {slot.table}")
    for cidr in (slot.pod_cidr, slot.service_cidr, slot.node_range):
        found += [f"route {line}" for line in run("ip", "route", "show", "root", cidr).splitlines()]
    return found


def _netns(slot: Slot) -> list[str]:
    names = [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]
    return [name for name in names if name.startswith(slot.netns_prefix)]


def _links(slot: Slot) -> list[str]:
    names = []
    for line in run("ip", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == slot.bridge or name.startswith(slot.veth_prefix):
            names.append(name)
    return names


def clean(slot: Slot) -> None:
    """Remove everything of ``slot`` from the host: processes in its pods' network namespaces,
    the namespaces, veths, bridge, nftables table and routes. Idempotent; a no-op without root."""
    if not can_manage_host():
        return
    for name in _netns(slot):
        for pid in run("ip", "netns", "pids", name, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run("ip", "netns", "delete", name, check=False)
    for name in _links(slot):
        run("ip", "link", "delete", name, check=False)
    if shutil.which("nft"):
        run("nft", "delete", "table", "ip", slot.table, check=False)
    for cidr in (slot.pod_cidr, slot.service_cidr, slot.node_range):
        run("ip", "route", "flush", "root", cidr, check=False)
    log.debug("slot %d is clean", slot.index)
