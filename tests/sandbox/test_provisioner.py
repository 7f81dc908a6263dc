"""The sandbox's default StorageClass and local-path provisioner bind claims through the API."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from app.sandbox.handle import SandboxState
from app.sandbox.provisioner import (
    CLAIM_PROVISIONER_ANNOTATION,
    PROVISIONED_BY_ANNOTATION,
    PROVISIONER,
    STORAGE_CLASS,
    LocalPathProvisioner,
    storage_class,
)
from tests.helpers import eventually


def _claim(name: str, storage: str = "1Gi", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
            **spec,
        },
    }


async def _bound(core: client.CoreV1Api, name: str, namespace: str, within: float = 20) -> Any:
    async def bound() -> Any:
        try:
            claim = await core.read_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as error:
            if error.status == 404:  # a StatefulSet's claim: not made yet
                return None
            raise
        return claim if claim.status.phase == "Bound" else None

    return await eventually(bound, within=within, every=0.05)


async def _gone(read: Any, *args: str) -> bool:
    try:
        await read(*args)
    except ApiException as error:
        return error.status == 404
    return False


async def test_default_class_is_ours_and_binds_immediately(kube_api: client.ApiClient) -> None:
    klass = await client.StorageV1Api(kube_api).read_storage_class(STORAGE_CLASS)
    assert klass.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    assert klass.provisioner == PROVISIONER
    assert klass.reclaim_policy == "Delete"
    assert klass.volume_binding_mode == "Immediate"


async def test_claim_without_class_binds_and_its_deletion_removes_volume_and_folder(
    kube_api: client.ApiClient, namespace: str, sandbox: SandboxState
) -> None:
    core = client.CoreV1Api(kube_api)
    started = time.monotonic()
    created = await core.create_namespaced_persistent_volume_claim(
        namespace, _claim("data", "2Gi", accessModes=["ReadWriteOnce", "ReadOnlyMany"])
    )
    assert created.spec.storage_class_name == STORAGE_CLASS  # the admission plugin's default
    claim = await _bound(core, "data", namespace)
    print(f"claim -> Bound in {time.monotonic() - started:.2f}s")
    assert claim.metadata.annotations[CLAIM_PROVISIONER_ANNOTATION] == PROVISIONER

    pv = await core.read_persistent_volume(claim.spec.volume_name)
    assert pv.metadata.name == f"pvc-{created.metadata.uid}"
    assert pv.metadata.annotations[PROVISIONED_BY_ANNOTATION] == PROVISIONER
    assert pv.status.phase == "Bound"
    assert pv.spec.capacity["storage"] == "2Gi"
    assert pv.spec.access_modes == ["ReadWriteOnce", "ReadOnlyMany"]
    assert pv.spec.storage_class_name == STORAGE_CLASS
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    ref = pv.spec.claim_ref
    assert (ref.namespace, ref.name, ref.uid) == (namespace, "data", created.metadata.uid)
    folder = sandbox.kubeconfig.parent / "volumes" / pv.metadata.name
    assert pv.spec.host_path.path == str(folder)
    assert pv.spec.host_path.type == "Directory"
    (folder / "kept").write_text("data")  # the folder exists

    await core.delete_namespaced_persistent_volume_claim("data", namespace)
    await eventually(lambda: _gone(core.read_persistent_volume, pv.metadata.name), within=20)
    assert not list(folder.parent.glob(pv.metadata.name))


async def test_stateful_set_claim_binds_and_its_pod_is_scheduled(
    kube_api: client.ApiClient, namespace: str
) -> None:
    labels = {"app": "chain"}
    await client.AppsV1Api(kube_api).create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "chain"},
            "spec": {
                "serviceName": "chain",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "node",
                                "image": "example.invalid/node:1",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [_claim("data")],
            },
        },
    )
    core = client.CoreV1Api(kube_api)
    claim = await _bound(core, "data-chain-0", namespace)
    assert claim.spec.storage_class_name == STORAGE_CLASS

    async def scheduled() -> Any:
        pod = await core.read_namespaced_pod("chain-0", namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("PodScheduled") == "True" else None

    pod = await eventually(scheduled, within=20)
    assert pod.spec.node_name
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "data-chain-0"


async def test_block_mode_claim_is_refused_with_an_event(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_persistent_volume_claim(
        namespace, _claim("raw", volumeMode="Block")
    )

    async def refused() -> Any:
        events = await core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=raw,reason=ProvisioningFailed"
        )
        return events.items[0] if events.items else None

    event = await eventually(refused, within=20)
    assert "Block" in event.message
    claim = await core.read_namespaced_persistent_volume_claim("raw", namespace)
    assert claim.status.phase == "Pending"


@pytest.fixture
async def test_class(kube_api: client.ApiClient) -> Any:
    """A class of a provisioner of the test's own (not the default), run by the test itself."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    body = storage_class(name, f"sandbox.qaas.dev/{name}")
    body["metadata"]["annotations"] = {}
    storage = client.StorageV1Api(kube_api)
    yield await storage.create_storage_class(body)
    await storage.delete_storage_class(name)


async def test_restarted_provisioner_catches_up_and_creates_no_second_volume(
    kube_api: client.ApiClient, namespace: str, test_class: Any, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_api)
    root = tmp_path / "volumes"
    klass = test_class.metadata.name

    def start() -> tuple[LocalPathProvisioner, asyncio.Task[None]]:
        provisioner = LocalPathProvisioner(kube_api, root, name=test_class.provisioner)
        return provisioner, asyncio.create_task(provisioner.run())

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    _, task = start()
    try:
        for name in ("kept", "dropped"):
            await core.create_namespaced_persistent_volume_claim(
                namespace, _claim(name, storageClassName=klass)
            )
        kept = await _bound(core, "kept", namespace)
        dropped = await _bound(core, "dropped", namespace)
        kept_pv = await core.read_persistent_volume(kept.spec.volume_name)
        (root / kept_pv.metadata.name / "block-1").write_text("genesis")
    finally:
        await stop(task)

    # While it is down: a claim is made, another deleted, and a stray folder appears.
    await core.create_namespaced_persistent_volume_claim(
        namespace, _claim("late", storageClassName=klass)
    )
    await core.delete_namespaced_persistent_volume_claim("dropped", namespace)

    async def released() -> bool:
        pv = await core.read_persistent_volume(dropped.spec.volume_name)
        return bool(pv.status.phase == "Released")

    await eventually(released, within=20)
    (root / "pvc-stray").mkdir()

    second, task = start()
    try:
        await _bound(core, "late", namespace)
        await eventually(lambda: _gone(core.read_persistent_volume, dropped.spec.volume_name))
        assert not (root / dropped.spec.volume_name).exists()
        assert not (root / "pvc-stray").exists()
        # The bound claim keeps its one volume, the same object, with its data.
        volumes = (await core.list_persistent_volume()).items
        assert [v.metadata.uid for v in volumes if v.spec.claim_ref.name == "kept"] == [
            kept_pv.metadata.uid
        ]
        assert (root / kept_pv.metadata.name / "block-1").read_text() == "genesis"
        raw = await core.read_namespaced_persistent_volume_claim(
            "kept", namespace, _preload_content=False
        )
        raw_class = await client.StorageV1Api(kube_api).read_storage_class(
            klass, _preload_content=False
        )
        assert not await second.provision(await raw.json(), await raw_class.json())
        for name in ("kept", "late"):
            await core.delete_namespaced_persistent_volume_claim(name, namespace)

        async def all_gone() -> bool:
            volumes = (await core.list_persistent_volume()).items
            return not [v for v in volumes if v.spec.storage_class_name == klass]

        await eventually(all_gone, within=20)
        assert not list(root.iterdir())
    finally:
        await stop(task)
