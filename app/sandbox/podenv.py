"""What a process of a pod sees: its environment, its files (path translation) and its network.

Files: no mount namespace. Every process pod has a root folder ``<state>/pods/<uid>/root``; a
volumeMount at ``/a/b`` becomes the symlink ``<root>/a/b`` -> the volume's directory (plus its
``subPath``), the working directory is ``<root>/<workingDir>`` (created if missing, like a
runtime does), and ``QAAS_SANDBOX_ROOT=<root>`` tells a program where its "/" is. Absolute paths
a program opens itself still mean the host's.

Environment: the container's ``env`` with ``value`` and ``valueFrom.fieldRef`` (name, namespace,
uid, node name, pod IP, host IP, service account, labels/annotations); Secret and ConfigMap
references and ``envFrom`` are skipped with a warning. ``$(VAR)`` in values, command and args is
expanded as Kubernetes does: ``$$`` escapes, unknown references stay as written.

Processes: started by `spawn` with ``PR_SET_PDEATHSIG`` (they die with the kubelet's process),
in a session (and process group) of their own so the kubelet signals the whole container, and,
for a pod with a network namespace, ``setns`` into it before ``exec``. A direct child dies with
the kubelet; its own children would not, so every process carries ``QAAS_SANDBOX_ROOT`` and
`reap` kills what is left of a pod by that mark (at deletion, and at the next kubelet start after
a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
ROOT_VARIABLE = "QAAS_SANDBOX_ROOT"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
# Resolved once, here: between fork and exec the child calls them without dlopen/dlsym, whose
# locks another thread of the kubelet might hold at the moment of the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)
_prctl = _LIBC.prctl
_setns = _LIBC.setns


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` -> ``$``, unknown ``$(X)`` kept as is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(variables.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _field(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str | None:
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    if path in simple:
        value = simple[path]
        return None if value is None else str(value)
    for kind in ("labels", "annotations"):
        prefix = f"metadata.{kind}['"
        if path.startswith(prefix) and path.endswith("']"):
            return str((meta.get(kind) or {}).get(path[len(prefix) : -2], ""))
    return None


def container_env(
    pod: dict[str, Any], container: dict[str, Any], *, pod_ip: str, host_ip: str, root: Path
) -> dict[str, str]:
    """The environment of ``container``'s process (a base set plus the container's ``env``)."""
    name = pod["metadata"]["name"]
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "HOSTNAME": name,
        "HOME": str(root),
        ROOT_VARIABLE: str(root),
    }
    if container.get("envFrom"):
        log.warning("pod %s: envFrom is not supported in the sandbox; skipped", name)
    for item in container.get("env") or []:
        if "valueFrom" not in item:
            env[item["name"]] = expand(item.get("value", ""), env)
            continue
        ref = item["valueFrom"].get("fieldRef")
        value = _field(pod, ref["fieldPath"], pod_ip, host_ip) if ref else None
        if value is None:
            log.warning(
                "pod %s: env %s (%s) is not supported; skipped",
                name,
                item["name"],
                next(iter(item["valueFrom"]), "?"),
            )
            continue
        env[item["name"]] = value
    return env


def prepare_root(
    root: Path, container: dict[str, Any], volumes: Mapping[str, Path], default_dir: str = "/"
) -> Path:
    """Link the container's volumeMounts under ``root``; return its working directory."""
    root.mkdir(parents=True, exist_ok=True)
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: len(m["mountPath"]))
    for mount in mounts:
        source = volumes.get(mount["name"])
        if source is None:
            continue
        if mount.get("subPath"):
            source = source / mount["subPath"]
            source.mkdir(parents=True, exist_ok=True)
        link = root / mount["mountPath"].strip("/")
        if link == root:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.readlink() == source:
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            link.rmdir()  # an empty folder made earlier; a non-empty one raises: a clash
        link.symlink_to(source, target_is_directory=True)
    workdir = root / (container.get("workingDir") or default_dir).strip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def netns_preexec(netns: str) -> Callable[[], None]:
    """A ``preexec_fn`` that moves a child into network namespace ``netns`` before it execs
    (for a process started outside `spawn`, e.g. a test's server in a pod's namespace)."""
    path = f"/run/netns/{netns}"

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({path}) failed")
        finally:
            os.close(fd)

    return enter


def _child_setup(netns_fd: int | None) -> None:
    if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if netns_fd is not None and _setns(netns_fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns into the pod's network namespace failed")


async def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    netns: str | None,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Start ``argv`` as a pod's process (see the module's docstring). Must run on the event
    loop's thread: the parent-death signal follows the thread that forks."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY) if netns else None
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(fd),
        )
    finally:
        if fd is not None:
            os.close(fd)


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group led by ``pid`` (the container); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def marked(prefix: str) -> list[tuple[int, str]]:
    """(pid, root) of every process whose ``QAAS_SANDBOX_ROOT`` starts with ``prefix``."""
    found = []
    mark = f"{ROOT_VARIABLE}={prefix}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(mark):
                found.append((int(entry.name), item.split(b"=", 1)[1].decode(errors="replace")))
                break
    return found


def reap(prefix: str) -> int:
    """SIGKILL every process marked with a root under ``prefix``; returns how many."""
    victims = marked(prefix)
    for pid, _ in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(victims)
