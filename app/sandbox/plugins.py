"""What the kubelet asks of the pod network and of the volume provisioner, and the defaults.

The kubelet does not make network namespaces nor provision volumes; it asks two plug-ins:

- `PodNetwork` gives a pod its address. A process pod gets a network namespace too (its name, for
  ``setns``), a simulated pod an IP only; both come from one IPAM so they never collide. The
  default, `HostNetwork`, puts process pods on the host network (pod IP = node IP, like a
  ``hostNetwork`` pod) and hands simulated pods fake addresses of the node's pod CIDR.
- `VolumeResolver` maps a pod's volume names to host directories; the kubelet links each
  volumeMount to its directory under the pod's root (see `app.sandbox.podenv`). The default,
  `EmptyDirs`, gives every ``emptyDir`` a folder inside the pod's own folder (gone with the pod)
  and skips the rest (Secrets and ServiceAccount tokens are not materialised).

A resolver that is not ready yet (an unbound claim) raises `VolumeNotReady`: the kubelet keeps the
pod in ``ContainerCreating`` with the message and asks again a little later.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)
Pod = dict[str, Any]


@dataclass(frozen=True)
class PodAddress:
    ip: str
    netns: str | None  # a name under /run/netns; None = the host's network namespace


class PodNetwork(Protocol):
    async def attach(self, pod: Pod, *, namespace: bool) -> PodAddress:
        """An address for ``pod`` (and a network namespace when ``namespace``). Idempotent per
        pod uid; a pod whose ``status.podIP`` is set keeps that IP (a kubelet restart)."""
        ...

    async def detach(self, pod: Pod) -> None:
        """Release the pod's address and namespace; a no-op for an unknown pod."""
        ...


class VolumeNotReady(Exception):
    """A volume cannot be provided yet; the message says why (shown in the pod's status)."""


class VolumeResolver(Protocol):
    async def resolve(self, pod: Pod, pod_dir: Path) -> Mapping[str, Path]:
        """Volume name -> host directory for the pod's volumes this resolver provides.

        ``pod_dir`` is the pod's own folder (deleted with the pod). Raise `VolumeNotReady` to be
        asked again later."""
        ...


class HostNetwork:
    """Process pods share the host's network (IP = ``node_ip``); simulated pods get fake IPs."""

    def __init__(self, node_ip: str, pod_cidr: str) -> None:
        self.node_ip = node_ip
        self.pod_cidr = ipaddress.IPv4Network(pod_cidr)
        self._ips: dict[str, str] = {}  # pod uid -> IP handed to a simulated pod

    async def attach(self, pod: Pod, *, namespace: bool) -> PodAddress:
        if namespace:
            return PodAddress(self.node_ip, None)
        uid = pod["metadata"]["uid"]
        known = self._ips.get(uid) or (pod.get("status") or {}).get("podIP")
        if known and ipaddress.IPv4Address(known) in self.pod_cidr:
            self._ips[uid] = known
            return PodAddress(known, None)
        used = set(self._ips.values())
        for address in self.pod_cidr.hosts():
            if str(address) not in used and not str(address).endswith(".1"):
                self._ips[uid] = str(address)
                return PodAddress(str(address), None)
        raise RuntimeError(f"pod CIDR {self.pod_cidr} is full")

    async def detach(self, pod: Pod) -> None:
        self._ips.pop(pod["metadata"]["uid"], None)


class EmptyDirs:
    """``emptyDir`` volumes as folders in the pod's folder; other kinds are skipped."""

    async def resolve(self, pod: Pod, pod_dir: Path) -> Mapping[str, Path]:
        found: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            if "emptyDir" in volume:
                found[volume["name"]] = folder = pod_dir / "volumes" / volume["name"]
                folder.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in volume:
                raise VolumeNotReady(f"volume {volume['name']}: no provisioner for claims here")
            else:
                log.info(
                    "pod %s: volume %s not materialised", pod["metadata"]["name"], volume["name"]
                )
        return found
