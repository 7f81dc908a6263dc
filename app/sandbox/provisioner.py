"""The sandbox's storage: a default StorageClass and a dynamic provisioner of the local-path kind.

Every node of a sandbox is a simulated kubelet on this host, so a plain directory serves a volume
on any node: a PersistentVolume here is a ``hostPath`` to ``<state_dir>/volumes/<pv name>``.

The provisioner works through the API only, the way an external provisioner does beside a real
controller-manager:

1. A claim is created without a class: the apiserver's DefaultStorageClass admission plugin (on
   by default in 1.20) writes the class marked ``is-default-class`` into it, ``qaas-local``.
2. The controller-manager's PV binder finds no volume for it and, the class's provisioner not
   being an in-tree plugin, annotates the claim with ``volume.beta.kubernetes.io/
   storage-provisioner: sandbox.qaas.dev/local-path`` and waits.
3. This provisioner sees the annotated, unbound claim, creates the directory and a PV named
   ``pvc-<claim uid>`` that is pre-bound to the claim (``claimRef`` with its uid) and annotated
   ``pv.kubernetes.io/provisioned-by``. The binder then binds both and marks them Bound.
4. When the claim is deleted, the binder marks the PV Released and leaves deleting to us, the
   provisioner named in its annotation: with reclaim policy Delete we remove the directory, then
   the PV.

The class binds Immediate, not WaitForFirstConsumer: a local-path volume normally waits for the
scheduler to pick a node because its directory exists on one node only; here every node shares
the host's filesystem, so there is nothing to wait for, and a claim binds on its own (as
``kubectl get pvc`` users expect), StatefulSet claims included, before their pods are scheduled.

Restarts are safe: the PV name comes from the claim's uid, so provisioning again answers 409 and
creates nothing; a relist redoes whatever was missed, and folders without a PV of ours (left by
a sandbox whose etcd is gone) are removed. Watch errors and expiry (410) lead to a relist, as in
the simulated kubelet. Claims asking for what a directory cannot give (block mode, a selector,
a data source) get a ``ProvisioningFailed`` event and stay Pending.

Example::

    await ensure_default_storage_class(api)
    provisioner = LocalPathProvisioner(api, state_dir / "volumes")
    await provisioner.run()  # until cancelled
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.follow import follow, raw

log = logging.getLogger(__name__)

PROVISIONER = "sandbox.qaas.dev/local-path"
STORAGE_CLASS = "qaas-local"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CLAIM_PROVISIONER_ANNOTATION = "volume.beta.kubernetes.io/storage-provisioner"  # by the binder
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
Object = dict[str, Any]
Handler = Callable[[str, Object], Awaitable[None]]


def storage_class(name: str = STORAGE_CLASS, provisioner: str = PROVISIONER) -> Object:
    """The StorageClass of our provisioner; the default class of the sandbox as written."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


async def ensure_default_storage_class(api: client.ApiClient, within: float = 30.0) -> None:
    """Create ``qaas-local`` unless it exists; return once new claims get it by default.

    The DefaultStorageClass admission plugin reads classes from the apiserver's informer, which
    trails a create a little: a dry-run claim (admitted, never stored) shows when it has caught up.
    """
    try:
        await client.StorageV1Api(api).create_storage_class(storage_class())
    except ApiException as error:
        if error.status != 409:
            raise
    probe = {
        "metadata": {"name": "qaas-default-class-probe"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + within
    while True:
        try:
            claim = await raw(
                core.create_namespaced_persistent_volume_claim(
                    "default", probe, dry_run="All", _preload_content=False
                )
            )
            if claim["spec"].get("storageClassName") == STORAGE_CLASS:
                log.info("default StorageClass %s in effect", STORAGE_CLASS)
                return
        except ApiException as error:
            if error.status not in (403, 404, 500):  # namespace not there yet, admission warming
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"claims did not get the default StorageClass {STORAGE_CLASS}")
        await asyncio.sleep(0.1)


def volume_name(claim: Object) -> str:
    """The PV of a claim: named after its uid, so provisioning twice finds the first one."""
    return f"pvc-{claim['metadata']['uid']}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalPathProvisioner:
    """Provisions and deletes the PVs of claims whose class names ``name`` as provisioner."""

    def __init__(self, api: client.ApiClient, root: Path, *, name: str = PROVISIONER) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.root = root
        self.name = name
        self.ready = asyncio.Event()  # set once claims and volumes were both listed
        self._listed: set[str] = set()
        # Held while a folder exists without its PV (provisioning) and while folders without a
        # PV are collected, so the collector never takes a folder whose PV is being created.
        self._lock = asyncio.Lock()

    def path(self, pv_name: str) -> Path:
        return self.root / pv_name

    async def run(self) -> None:
        """Follow claims and volumes until cancelled."""
        self.root.mkdir(parents=True, exist_ok=True)
        core = self.core
        async with asyncio.TaskGroup() as group:
            claims = core.list_persistent_volume_claim_for_all_namespaces
            group.create_task(self._follow("claims", claims, self.on_claim))
            group.create_task(self._follow("volumes", core.list_persistent_volume, self.on_volume))

    async def _follow(self, what: str, lister: Any, handle: Handler) -> None:
        async def listed(items: list[Object]) -> None:
            for item in items:
                await self._handle(handle, "MODIFIED", item)
            if what == "volumes":
                await self.collect_garbage()
            self._listed.add(what)
            if len(self._listed) == 2:
                self.ready.set()

        async def changed(kind: str, item: Object) -> None:
            await self._handle(handle, kind, item)

        await follow(what, lister, listed, changed)

    @staticmethod
    async def _handle(handle: Handler, kind: str, item: Object) -> None:
        try:
            await handle(kind, item)
        except (ApiException, OSError, TimeoutError):
            raise  # the API or the disk failed: relist and try again
        except Exception:
            log.exception("provisioner failed on %s", item.get("metadata", {}).get("name"))

    # -- claims -----------------------------------------------------------------------------

    async def on_claim(self, kind: str, claim: Object) -> None:
        """Provision a PV for an unbound claim the binder handed to us."""
        meta, spec = claim["metadata"], claim.get("spec", {})
        if (
            kind == "DELETED"
            or meta.get("deletionTimestamp")
            or spec.get("volumeName")
            or meta.get("annotations", {}).get(CLAIM_PROVISIONER_ANNOTATION) != self.name
        ):
            return
        try:
            klass = await raw(
                self.storage.read_storage_class(
                    spec.get("storageClassName", ""), _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return  # the binder will not wait for a class that is gone
            raise
        if klass.get("provisioner") != self.name:
            return
        refusal = self._refusal(spec)
        if refusal:
            await self._event(claim, "Warning", "ProvisioningFailed", refusal)
            return
        await self.provision(claim, klass)

    @staticmethod
    def _refusal(spec: Object) -> str | None:
        if spec.get("volumeMode", "Filesystem") != "Filesystem":
            return "volumeMode Block is not supported: the sandbox's local-path volumes are folders"
        if spec.get("selector"):
            return "claim selector is not supported by the sandbox's local-path provisioner"
        if spec.get("dataSource"):
            return "claim dataSource (cloning, snapshots) is not supported in the sandbox"
        return None

    async def provision(self, claim: Object, klass: Object) -> bool:
        """Create the directory and the PV of ``claim``; False if the PV existed already."""
        meta, spec = claim["metadata"], claim["spec"]
        name = volume_name(claim)
        path = self.path(name)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY_ANNOTATION: self.name}},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy") or "Delete",
                "storageClassName": spec.get("storageClassName"),
                "volumeMode": "Filesystem",
                "mountOptions": klass.get("mountOptions"),
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        async with self._lock:
            path.mkdir(parents=True, exist_ok=True)
            try:
                await self.core.create_persistent_volume(volume)
            except ApiException as error:
                if error.status == 409:
                    return False  # provisioned before (a resync, or before a restart)
                raise
        log.info("provisioned %s for claim %s/%s", name, meta["namespace"], meta["name"])
        await self._event(
            claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}"
        )
        return True

    async def _event(self, claim: Object, kind: str, reason: str, message: str) -> None:
        meta = claim["metadata"]
        now = _now()
        event = {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}"},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": self.name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as error:
            log.warning("event %s on claim %s: %s", reason, meta["name"], error.reason)

    # -- volumes ----------------------------------------------------------------------------

    def _ours(self, volume: Object) -> bool:
        meta = volume["metadata"]
        annotations = meta.get("annotations") or {}
        return bool(
            annotations.get(PROVISIONED_BY_ANNOTATION) == self.name
            and str(meta.get("name", "")).startswith("pvc-")
        )

    async def on_volume(self, kind: str, volume: Object) -> None:
        """Delete a Released PV of ours whose policy is Delete: its folder, then the object."""
        if not self._ours(volume):
            return
        name = volume["metadata"]["name"]
        if kind == "DELETED":
            # Nothing can reference the folder of a PV that is gone (e.g. Retain, then deleted).
            shutil.rmtree(self.path(name), ignore_errors=True)
            return
        if (
            volume.get("status", {}).get("phase") != "Released"
            or volume["spec"].get("persistentVolumeReclaimPolicy") != "Delete"
            or volume["metadata"].get("deletionTimestamp")
        ):
            return
        shutil.rmtree(self.path(name), ignore_errors=True)
        try:
            await self.core.delete_persistent_volume(name)
        except ApiException as error:
            if error.status != 404:
                raise
        log.info("deleted %s and its folder", name)

    async def collect_garbage(self) -> list[str]:
        """Remove folders that have no PV of ours (a sandbox before this one made them)."""
        removed = []
        async with self._lock:
            listing = await raw(self.core.list_persistent_volume(_preload_content=False))
            names = {v["metadata"]["name"] for v in listing["items"] if self._ours(v)}
            for folder in self.root.glob("pvc-*"):
                if folder.name not in names:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder.name)
        if removed:
            log.info("removed %d volume folders without a PV", len(removed))
        return removed
