"""`VolumeResolver` gives each volume of a real pod a host path with the right content."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from app.sandbox.volumes import VolumeNotReady, VolumeResolver, VolumeUnsupported


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _raw_pod(core: client.CoreV1Api, name: str, namespace: str) -> dict[str, Any]:
    response = await core.read_namespaced_pod(name, namespace, _preload_content=False)
    pod: dict[str, Any] = await response.json()
    return pod


def _pod(name: str, namespace: str, *volumes: dict[str, Any]) -> dict[str, Any]:
    """A pod as the resolver sees it, for volumes that need no pod in the API."""
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": "0" * 8},
        "spec": {"containers": [{"name": "main", "image": "x"}], "volumes": list(volumes)},
    }


async def test_pod_volumes_resolve_to_folders_with_their_content(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "chain"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    await core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "keys"}, "data": {"nodekey": _b64("k1"), "other": _b64("no")}},
    )
    await core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "genesis"},
            "data": {"genesis.json": '{"chainId": 10}'},
            "binaryData": {"blob": _b64("\x00\x01")},
        },
    )
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "chain"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "keys", "secret": {"secretName": "keys", "defaultMode": 0o400,
                                    "items": [{"key": "nodekey", "path": "node/key"}]}},
        {"name": "genesis", "configMap": {"name": "genesis"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        ]}},
        {"name": "bound", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
            {"configMap": {"name": "genesis", "items": [{"key": "genesis.json", "path": "g"}]}},
        ]}},
    ]  # fmt: skip
    await core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "node", "labels": {"app": "qnm", "role": "coordinator"}},
            "spec": {
                "containers": [{"name": "main", "image": "example.invalid/qnm:1"}],
                "volumes": volumes,
            },
        },
    )
    pod = await _raw_pod(core, "node", namespace)
    pod_dir = tmp_path / "pods" / pod["metadata"]["uid"]
    paths = await VolumeResolver(kube_api).resolve(pod, pod_dir, within=20)

    # 1.20's ServiceAccount admission adds a secret volume with the account's token to every pod.
    token_volume = next(n for n in paths if n.startswith("default-token-"))
    assert set(paths) == {*(v["name"] for v in volumes), token_volume}
    account = paths[token_volume]
    assert (account / "namespace").read_text() == namespace
    assert (account / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    await _assert_authenticates(kube_api, (account / "token").read_text(), namespace)

    claim = await core.read_namespaced_persistent_volume_claim("chain", namespace)
    pv = await core.read_persistent_volume(claim.spec.volume_name)
    assert paths["data"] == Path(pv.spec.host_path.path)
    assert paths["data"].is_dir()
    assert paths["scratch"].is_dir()
    assert paths["scratch"].is_relative_to(pod_dir)

    key = paths["keys"] / "node" / "key"
    assert key.read_text() == "k1"
    assert key.stat().st_mode & 0o777 == 0o400
    assert not (paths["keys"] / "other").exists()  # items: only the keys asked for
    assert (paths["genesis"] / "genesis.json").read_text() == '{"chainId": 10}'
    assert (paths["genesis"] / "blob").read_bytes() == b"\x00\x01"
    assert (paths["info"] / "labels").read_text() == 'app="qnm"\nrole="coordinator"'
    assert (paths["info"] / "name").read_text() == "node"
    assert (paths["bound"] / "g").read_text() == '{"chainId": 10}'
    await _assert_authenticates(kube_api, (paths["bound"] / "token").read_text(), namespace)

    # Resolving again (a container restart) keeps the emptyDir and shows a changed ConfigMap.
    (paths["scratch"] / "state").write_text("kept")
    await core.patch_namespaced_config_map("genesis", namespace, {"data": {"genesis.json": "{}"}})
    again = await VolumeResolver(kube_api).resolve(pod, pod_dir)
    assert (again["scratch"] / "state").read_text() == "kept"
    assert (again["genesis"] / "genesis.json").read_text() == "{}"

    (paths["data"] / "block").write_text("1")
    VolumeResolver.release(pod_dir)
    assert not paths["scratch"].exists()
    assert not paths["keys"].exists()
    assert (paths["data"] / "block").read_text() == "1"  # the claim's data outlives the pod


async def _assert_authenticates(api: client.ApiClient, token: str, namespace: str) -> None:
    review = await client.AuthenticationV1Api(api).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"


async def test_claim_not_bound_yet_is_reported_as_not_ready(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    await client.CoreV1Api(kube_api).create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "orphan"},
            "spec": {
                "storageClassName": "no-such-class",  # nothing will ever provision it
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    resolver = VolumeResolver(kube_api)
    pod = _pod("p", namespace, {"name": "data", "persistentVolumeClaim": {"claimName": "orphan"}})
    with pytest.raises(VolumeNotReady, match="persistentvolumeclaim orphan is not bound yet"):
        await resolver.resolve(pod, tmp_path, within=0.5)
    missing = _pod("p", namespace, {"name": "keys", "secret": {"secretName": "later"}})
    with pytest.raises(VolumeNotReady, match="secret later not found"):
        await resolver.resolve(missing, tmp_path)
    optional = _pod("p", namespace, {"name": "keys", "secret": {"secretName": "later",
                                                                "optional": True}})  # fmt: skip
    assert not list((await resolver.resolve(optional, tmp_path))["keys"].iterdir())


async def test_host_paths_only_if_they_exist_and_other_types_are_refused(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    resolver = VolumeResolver(kube_api)
    here = _pod("p", namespace, {"name": "h", "hostPath": {"path": str(tmp_path)}})
    assert (await resolver.resolve(here, tmp_path / "pod"))["h"] == tmp_path

    absent = tmp_path / "absent"
    for kind in ("", "DirectoryOrCreate"):
        pod = _pod("p", namespace, {"name": "h", "hostPath": {"path": str(absent), "type": kind}})
        with pytest.raises(VolumeUnsupported, match="does not exist"):
            await resolver.resolve(pod, tmp_path / "pod")
        assert not absent.exists()
    nfs = _pod("p", namespace, {"name": "n", "nfs": {"server": "127.0.0.1", "path": "/"}})
    with pytest.raises(VolumeUnsupported, match="unsupported volume type nfs"):
        await resolver.resolve(nfs, tmp_path / "pod")
    escaping = _pod("p", namespace, {"name": "i", "downwardAPI": {"items": [
        {"path": "../../etc/x", "fieldRef": {"fieldPath": "metadata.name"}}]}})  # fmt: skip
    with pytest.raises(VolumeUnsupported, match="leaves the volume"):
        await resolver.resolve(escaping, tmp_path / "pod")


async def test_resolver_waits_for_a_claim_that_binds_meanwhile(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_api)
    pod = _pod("p", namespace, {"name": "data", "persistentVolumeClaim": {"claimName": "soon"}})
    resolver = VolumeResolver(kube_api)
    with pytest.raises(VolumeNotReady, match="persistentvolumeclaim soon not found"):
        await resolver.resolve(pod, tmp_path)
    await core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "soon"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    paths = await resolver.resolve(pod, tmp_path, within=20)
    claim = await core.read_namespaced_persistent_volume_claim("soon", namespace)
    assert paths["data"].name == claim.spec.volume_name
