"""The sandbox's image table: which container images the kubelet runs as local processes, and how.

There is no container runtime and no image is ever pulled. A few images are known by name:

===========================  ==================================================================
the QNM image                ``narayanprusty/qnm`` (any tag), or whatever names the constructor
                             is given (the service's ``QAAS_NODE_IMAGE``): the container's
                             command and args are replaced by the QNM stand-in (``STANDIN``),
                             which reads QNM's environment.
``qaas.dev/sandbox-host``    (any tag) the container's command and args run as given, with the
                             host's binaries (``sh``, ``sleep``, ``python3 -m http.server``).
anything else                simulated: the kubelet only writes a plausible status.
===========================  ==================================================================

A pod runs as processes only if EVERY container's image is in the table, it has no init
containers, and the runtime it asks for is ``process``: the pod's annotation
``sandbox.qaas.dev/runtime`` (``process`` or ``simulated``) if it has one, else the same label on
its namespace, else the kubelet's default (``process`` for ``qaas sandbox up``; the test suite's
sandbox defaults to ``simulated`` because it runs hundreds of pods, and labels the namespaces of
the tests that want processes). The kubelet also caps the number of process pods per node (see
`app.sandbox.kubelet`).

Example::

    table = ImageTable(["narayanprusty/qnm", "registry.local/qnm"])
    table.command({"image": "qaas.dev/sandbox-host:1", "command": ["sh", "-c", "echo hi"]})
    # -> ["sh", "-c", "echo hi"]
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_QNM_IMAGE = "narayanprusty/qnm"
HOST_IMAGE = "qaas.dev/sandbox-host"
# The QNM stand-in (built elsewhere in app/sandbox/standin): the one place that names it.
# A 1 MiB young generation keeps a node at ~120-135 MiB instead of ~150-165 MiB (same CPU).
STANDIN: tuple[str, ...] = (
    "node",
    "--max-semi-space-size=1",
    str(REPO / "app" / "sandbox" / "standin" / "main.mjs"),
)
RUNTIME_ANNOTATION = "sandbox.qaas.dev/runtime"
SIMULATED = "simulated"
PROCESS = "process"


class ImageError(ValueError):
    """A table image that cannot run as given (e.g. the host image without a command)."""


def repository(image: str) -> str:
    """``image`` without its tag or digest: ``docker.io/a/b:1`` -> ``docker.io/a/b``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _short(name: str) -> str:
    """Docker Hub's implicit prefixes dropped: ``docker.io/library/x`` -> ``x``."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


class ImageTable:
    """Maps images to the command a process pod runs; ``None`` means simulated."""

    def __init__(self, qnm_images: Iterable[str] = (DEFAULT_QNM_IMAGE,)) -> None:
        self.qnm = {_short(repository(image)) for image in qnm_images}

    def kind(self, image: str) -> str | None:
        """``"qnm"``, ``"host"`` or ``None`` (not in the table: simulated)."""
        name = _short(repository(image))
        if name == HOST_IMAGE:
            return "host"
        if name in self.qnm:
            return "qnm"
        return None

    def runs_as_process(self, pod: dict[str, Any]) -> bool:
        """True when every container is in the table and the pod does not opt out."""
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get(RUNTIME_ANNOTATION) == SIMULATED:
            return False
        containers = pod["spec"].get("containers", [])
        init = pod["spec"].get("initContainers") or []
        return bool(containers) and not init and all(self.kind(c["image"]) for c in containers)

    def command(self, container: dict[str, Any]) -> list[str]:
        """The argv (before ``$(VAR)`` expansion) for ``container``; ImageError if it has none."""
        kind = self.kind(container["image"])
        if kind == "qnm":
            return list(STANDIN)
        if kind == "host":
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            if not container.get("command"):
                raise ImageError(f"{HOST_IMAGE} has no entrypoint: the container needs a command")
            return argv
        raise ImageError(f"image {container['image']!r} is not in the sandbox's image table")


def asks_for_process(pod: dict[str, Any], namespace_labels: dict[str, str], default: str) -> bool:
    """The runtime a pod asks for: its annotation, else its namespace's label, else ``default``."""
    annotations = pod["metadata"].get("annotations") or {}
    for choice in (annotations.get(RUNTIME_ANNOTATION), namespace_labels.get(RUNTIME_ANNOTATION)):
        if choice in (PROCESS, SIMULATED):
            return choice == PROCESS
    return default == PROCESS
