"""The sandbox's errors, in a module of their own: the CLI catches them without importing the
sandbox itself (its supervisor, kubelet and TLS code), which `qaas serve` with a cluster never
needs."""

from __future__ import annotations


class SandboxError(RuntimeError):
    """The sandbox could not start or stop; the message says why and where the logs are."""


class BuildError(RuntimeError):
    """The control plane could not be built; the message says which phase and why."""
