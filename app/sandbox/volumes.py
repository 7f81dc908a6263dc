"""Where a pod's volumes are on the host: volume name -> host path, for the process runtime.

The sandbox runs a pod's containers as host processes and gives them their volumes by path
translation (a mount at ``/a/b`` becomes a symlink ``<pod root>/a/b`` to the volume's path), so
a kubelet's volume manager reduces to finding or making one host path per volume. The folders a
pod owns live under its pod folder, named as a kubelet names them
(``<pod_dir>/volumes/kubernetes.io~<kind>/<volume name>``), and go with it (`release`):

==========================  =====================================================================
``persistentVolumeClaim``   The bound PV's directory (``hostPath``/``local`` path, which our
                            provisioner made). A claim not bound yet raises `VolumeNotReady`.
``emptyDir``                A folder of the pod, kept across container restarts. ``medium:
                            Memory`` and ``sizeLimit`` are not enforced.
``hostPath``                The path itself, only if it exists (and is a directory or file when
                            ``type`` says so): the sandbox creates nothing outside its folders.
``secret``, ``configMap``   The keys written as files (``items``, ``defaultMode``, ``mode``,
                            ``optional`` honoured). The service-account token every pod gets in
                            1.20 is a secret volume like any other.
``downwardAPI``             ``fieldRef`` of ``metadata.*`` written as files; ``resourceFieldRef``
                            is refused.
``projected``               The above sources plus ``serviceAccountToken`` (a TokenRequest bound
                            to the pod, written once: not refreshed before it expires).
anything else               `VolumeUnsupported`.
==========================  =====================================================================

Files are written when the pod's volumes are resolved, not kept in sync afterwards: a changed
Secret or ConfigMap shows up at the next `resolve` (a container restart), not live. ``readOnly``
is not enforced (the processes run as the sandbox's user).

Example::

    resolver = VolumeResolver(api)
    paths = await resolver.resolve(pod, state_dir / "pods" / uid)   # {"data": Path(...), ...}
    ...
    VolumeResolver.release(state_dir / "pods" / uid)                # when the pod is gone
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox import plugins
from app.sandbox.follow import raw

Object = dict[str, Any]
Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)
DEFAULT_MODE = 0o644
# A kubelet's folder names for the volumes a pod owns (kubernetes.io~<plugin>).
PLUGINS = {"emptyDir": "empty-dir", "secret": "secret", "configMap": "configmap",
           "downwardAPI": "downward-api", "projected": "projected"}  # fmt: skip


class VolumeError(RuntimeError):
    """A volume of a pod cannot be given to it; the message names the volume and why."""


class VolumeNotReady(VolumeError, plugins.VolumeNotReady):
    """Not yet (a claim not bound, a secret not created): worth trying again later."""


class VolumeUnsupported(VolumeError):
    """Never, as specified (an unsupported type, a host path that does not exist)."""


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _field(pod: Object, path: str) -> str:
    """A downward API ``fieldRef`` of the metadata, formatted as a kubelet formats it."""
    meta = pod["metadata"]
    for kind in ("labels", "annotations"):
        prefix = f"metadata.{kind}"
        values: dict[str, str] = meta.get(kind) or {}
        if path == prefix:
            return "\n".join(f"{k}={_quote(v)}" for k, v in sorted(values.items()))
        if path.startswith(f"{prefix}['") and path.endswith("']"):
            return values.get(path[len(prefix) + 2 : -2], "")
    simple = {"metadata.name": "name", "metadata.namespace": "namespace", "metadata.uid": "uid"}
    if path in simple:
        return str(meta.get(simple[path], ""))
    raise VolumeUnsupported(f"downward API field {path} is not supported in the sandbox")


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise VolumeError(f"{what}: its path {path} is missing")
    return path


def _write(folder: Path, files: Files) -> None:
    """Replace ``folder`` by one holding exactly ``files`` (built aside, then swapped in)."""
    staging = folder.with_name(f".{folder.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for relative, (content, mode) in files.items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


class VolumeResolver:
    """Finds or makes the host path of each volume of a pod (see the module's table)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    async def resolve(self, pod: Object, pod_dir: Path, *, within: float = 0.0) -> dict[str, Path]:
        """Volume name -> host path for every volume of ``pod`` (a raw API object).

        ``pod_dir`` is the pod's own folder (``<state_dir>/pods/<uid>``). A `VolumeNotReady`
        is retried for ``within`` seconds before it is raised; `VolumeUnsupported` at once.
        """
        deadline = time.monotonic() + within
        while True:
            try:
                return {
                    volume["name"]: await self.volume(pod, volume, pod_dir)
                    for volume in pod["spec"].get("volumes") or []
                }
            except VolumeNotReady:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.2)

    @staticmethod
    def release(pod_dir: Path) -> None:
        """Remove the folders the pod's volumes own (emptyDir, secrets...); PVs stay."""
        shutil.rmtree(pod_dir / "volumes", ignore_errors=True)

    async def volume(self, pod: Object, volume: Object, pod_dir: Path) -> Path:
        """The host path of one volume of ``pod``."""
        name = str(volume["name"])
        kinds = [key for key in volume if key != "name"]
        kind = kinds[0] if kinds else "(none)"
        folder = pod_dir / "volumes" / f"kubernetes.io~{PLUGINS.get(kind, kind)}" / name
        spec: Object = volume.get(kind) or {}
        namespace = pod["metadata"]["namespace"]
        if kind == "persistentVolumeClaim":
            return await self._claim(namespace, name, spec["claimName"])
        if kind == "hostPath":
            return self._host_path(name, spec)
        if kind == "emptyDir":
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        mode = int(spec.get("defaultMode", DEFAULT_MODE))
        if kind == "secret":
            files = await self._keyed(namespace, name, "secret", spec, mode)
        elif kind == "configMap":
            files = await self._keyed(namespace, name, "configMap", spec, mode)
        elif kind == "downwardAPI":
            files = self._downward(pod, name, spec, mode)
        elif kind == "projected":
            files = await self._projected(pod, name, spec, mode)
        else:
            raise VolumeUnsupported(f"volume {name}: unsupported volume type {kind} in the sandbox")
        _write(folder, files)
        return folder

    async def _read(self, method: Any, *args: str) -> Object | None:
        try:
            return await raw(method(*args, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def _claim(self, namespace: str, name: str, claim_name: str) -> Path:
        claim = await self._read(
            self.core.read_namespaced_persistent_volume_claim, claim_name, namespace
        )
        if claim is None:
            raise VolumeNotReady(f"volume {name}: persistentvolumeclaim {claim_name} not found")
        bound = claim["spec"].get("volumeName")
        if claim.get("status", {}).get("phase") != "Bound" or not bound:
            raise VolumeNotReady(
                f"volume {name}: persistentvolumeclaim {claim_name} is not bound yet"
            )
        pv = await self._read(self.core.read_persistent_volume, bound)
        if pv is None:
            raise VolumeNotReady(f"volume {name}: persistentvolume {bound} not found")
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if source is None:
            raise VolumeUnsupported(
                f"volume {name}: persistentvolume {bound} is neither hostPath nor local"
            )
        return _existing(Path(source["path"]), f"volume {name}: persistentvolume {bound}")

    @staticmethod
    def _host_path(name: str, spec: Object) -> Path:
        path = Path(spec["path"])
        wanted = spec.get("type") or ""
        if not path.exists():
            raise VolumeUnsupported(
                f"volume {name}: hostPath {path} does not exist (the sandbox creates none)"
            )
        if (wanted == "Directory" and not path.is_dir()) or (
            wanted == "File" and not path.is_file()
        ):
            raise VolumeUnsupported(f"volume {name}: hostPath {path} is not a {wanted.lower()}")
        return path

    async def _keyed(self, namespace: str, name: str, kind: str, spec: Object, mode: int) -> Files:
        """The files of a secret or configMap source (a volume's or a projected one's)."""
        source = spec.get("secretName" if kind == "secret" else "name") or spec.get("name", "")
        method = (
            self.core.read_namespaced_secret
            if kind == "secret"
            else self.core.read_namespaced_config_map
        )
        found = await self._read(method, source, namespace)
        if found is None:
            if spec.get("optional"):
                return {}
            raise VolumeNotReady(f"volume {name}: {kind} {source} not found")
        values: dict[str, bytes] = {}
        if kind == "secret":
            for key, value in (found.get("data") or {}).items():
                values[key] = base64.b64decode(value)
        else:
            for key, text in (found.get("data") or {}).items():
                values[key] = text.encode()
            for key, value in (found.get("binaryData") or {}).items():
                values[key] = base64.b64decode(value)
        items = spec.get("items")
        if not items:
            return {key: (content, mode) for key, content in values.items()}
        files: Files = {}
        for item in items:
            if item["key"] not in values:
                if spec.get("optional"):
                    continue
                raise VolumeNotReady(f"volume {name}: {kind} {source} has no key {item['key']}")
            files[self._relative(name, item["path"])] = (
                values[item["key"]],
                int(item.get("mode", mode)),
            )
        return files

    @staticmethod
    def _relative(name: str, path: str) -> str:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise VolumeUnsupported(f"volume {name}: item path {path!r} leaves the volume")
        return str(pure)

    def _downward(self, pod: Object, name: str, spec: Object, mode: int) -> Files:
        files: Files = {}
        for item in spec.get("items") or []:
            if "fieldRef" not in item:
                raise VolumeUnsupported(
                    f"volume {name}: downward API item {item.get('path')}: only fieldRef"
                    " is supported"
                )
            value = _field(pod, item["fieldRef"]["fieldPath"])
            files[self._relative(name, item["path"])] = (
                value.encode(),
                int(item.get("mode", mode)),
            )
        return files

    async def _projected(self, pod: Object, name: str, spec: Object, mode: int) -> Files:
        files: Files = {}
        namespace = pod["metadata"]["namespace"]
        for source in spec.get("sources") or []:
            if "secret" in source:
                files |= await self._keyed(namespace, name, "secret", source["secret"], mode)
            elif "configMap" in source:
                files |= await self._keyed(namespace, name, "configMap", source["configMap"], mode)
            elif "downwardAPI" in source:
                files |= self._downward(pod, name, source["downwardAPI"], mode)
            elif "serviceAccountToken" in source:
                token = await self._token(pod, source["serviceAccountToken"])
                files[self._relative(name, source["serviceAccountToken"]["path"])] = (token, mode)
            else:
                raise VolumeUnsupported(f"volume {name}: unsupported projected source {source}")
        return files

    async def _token(self, pod: Object, spec: Object) -> bytes:
        """A service-account token bound to the pod, asked of the TokenRequest API."""
        meta = pod["metadata"]
        request = {
            "spec": {
                "audiences": [spec["audience"]] if spec.get("audience") else None,
                "expirationSeconds": int(spec.get("expirationSeconds", 3600)),
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"],
                },
            }
        }  # fmt: skip
        account = pod["spec"].get("serviceAccountName") or "default"
        answer = await raw(
            self.core.create_namespaced_service_account_token(
                account, meta["namespace"], request, _preload_content=False
            )
        )
        return str(answer["status"]["token"]).encode()
