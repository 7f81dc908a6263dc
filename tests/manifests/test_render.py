"""`qaas render` prints the objects the reconciler creates: applied with kubectl, they are equal."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli import main
from app.cli.render import RenderRequest, parse_service_ips, render
from app.cluster.connect import ClusterTarget, connect
from app.cluster.objects import NETWORK_ID, NODE_ID, SPEC_HASH
from app.config import Settings
from app.control.reconciler import Reconciler
from app.domain.enums import Consensus
from app.events.bus import InProcessBus
from tests.conftest import CallerTenant
from tests.helpers import Writes
from tests.manifests.conftest import kubectl

# Set by the API server or by kubectl, not by the builders.
VOLATILE = {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
            "selfLink", "namespace"}  # fmt: skip
VOLATILE_ANNOTATIONS = {
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    SPEC_HASH,  # a digest of the template, which holds the ids and addresses
}


@pytest.fixture
async def render_namespace(kubeconfig: Path) -> AsyncIterator[str]:
    name = f"r-{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(kubectl, kubeconfig, "create", "namespace", name)
    yield name
    await asyncio.to_thread(kubectl, kubeconfig, "delete", "namespace", name, "--wait=false")


def _objects(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    listed = kubectl(kubeconfig, "-n", namespace, "get", "services,statefulsets",
                     "-l", "app.kubernetes.io/managed-by=qaas", "-o", "json").stdout  # fmt: skip
    items: list[dict[str, Any]] = json.loads(listed)["items"]
    return items


def comparable(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """The objects by (kind, name), with ids and ClusterIPs named by the node they belong to."""
    aliases: dict[str, str] = {}
    for obj in objects:
        labels = obj["metadata"]["labels"]
        aliases[labels[NETWORK_ID]] = "<network id>"
        aliases[labels[NODE_ID]] = f"<id of {labels['qaas.dev/node']}>"
        if obj["kind"] == "Service":
            aliases[obj["spec"]["clusterIP"]] = f"<ClusterIP of {labels['qaas.dev/node']}>"

    def alias(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: alias(v) for k, v in value.items()}
        if isinstance(value, list):
            return [alias(v) for v in value]
        return aliases.get(value, value) if isinstance(value, str) else value

    result = {}
    for original in objects:
        obj = copy.deepcopy(original)
        obj.pop("status", None)
        meta = obj["metadata"]
        for key in VOLATILE:
            meta.pop(key, None)
        annotations = {
            k: v for k, v in (meta.pop("annotations", None) or {}).items()
            if k not in VOLATILE_ANNOTATIONS
        }  # fmt: skip
        if annotations:
            meta["annotations"] = annotations
        result[(obj["kind"], meta["name"])] = alias(obj)
    return result


async def test_rendered_objects_applied_equal_the_reconcilers(
    kubeconfig: Path,
    namespace: str,
    render_namespace: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    tenant: CallerTenant,
) -> None:
    # What the reconciler creates, in `namespace` (the tenant's).
    assert tenant.namespace == namespace
    created = await Writes(sessions).create_network(tenant.id, "acme", Consensus.IBFT)
    assert created.network is not None
    added = await Writes(sessions).add_node(tenant.id, created.network.id, "peer-1")
    assert added.node is not None
    cluster = await connect(ClusterTarget("kubeconfig", kubeconfig), namespace)
    try:
        await Reconciler(sessions, cluster, settings, InProcessBus()).reconcile_once()
    finally:
        await cluster.close()

    # The same network rendered and applied in `render_namespace`: Services, then (with their
    # ClusterIPs) the StatefulSets.
    request = RenderRequest(network="acme", consensus=Consensus.IBFT, peers=("peer-1",),
                            namespace=render_namespace, only="services")  # fmt: skip
    await asyncio.to_thread(kubectl, kubeconfig, "apply", "-f", "-",
                            stdin=render(request, settings))  # fmt: skip
    services = await asyncio.to_thread(_objects, kubeconfig, render_namespace)
    ips = parse_service_ips(
        f"{s['metadata']['labels']['qaas.dev/node']}={s['spec']['clusterIP']}" for s in services
    )
    request = RenderRequest(network="acme", consensus=Consensus.IBFT, peers=("peer-1",),
                            namespace=render_namespace, service_ips=ips,
                            only="statefulsets")  # fmt: skip
    await asyncio.to_thread(kubectl, kubeconfig, "apply", "-f", "-",
                            stdin=render(request, settings))  # fmt: skip

    by_reconciler = await asyncio.to_thread(_objects, kubeconfig, namespace)
    by_render = await asyncio.to_thread(_objects, kubeconfig, render_namespace)
    assert len(by_reconciler) == 4
    assert comparable(by_render) == comparable(by_reconciler)
    for obj in by_render:
        if obj["kind"] == "StatefulSet":
            assert obj["metadata"]["annotations"][SPEC_HASH]


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_placeholders_are_marked_until_addresses_are_given(settings: Settings) -> None:
    text = render(RenderRequest(network="acme", peers=("peer-1",)), settings)
    assert "PLACEHOLDERS" in text.split("apiVersion")[0]  # said in the header comment
    peer = _documents(text)[-1]
    env = {e["name"]: e["value"] for e in peer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["IP"] == "<ClusterIP of acme-peer-1>"
    assert env["COORDINATING_IP"] == "<ClusterIP of acme-coordinator>"
    assert [d["kind"] for d in _documents(text)] == ["Service"] * 2 + ["StatefulSet"] * 2
    claims = [d["spec"]["volumeClaimTemplates"][0] for d in _documents(text)[2:]]
    assert {c["spec"]["resources"]["requests"]["storage"] for c in claims} == {"1Gi"}
    assert "data-acme-peer-1-0" in text  # the claim's name, in the document's title
    assert text == render(RenderRequest(network="acme", peers=("peer-1",)), settings)  # stable


def test_joining_renders_only_the_peer(settings: Settings) -> None:
    request = RenderRequest(network="far", coordinator_ip="10.1.2.3",
                            service_ips={"peer": "10.96.0.9"})  # fmt: skip
    documents = _documents(render(request, settings))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Service", "far-peer"), ("StatefulSet", "far-peer"),
    ]  # fmt: skip
    env = documents[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "COORDINATING_IP", "value": "10.1.2.3"} in env
    assert {"name": "IP", "value": "10.96.0.9"} in env


def test_cli_prints_yaml_and_warns_on_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--network", "acme", "--peers", "2", "--namespace", "demo"]) == 0
    out, err = capsys.readouterr()
    names = [d["metadata"]["name"] for d in _documents(out)]
    assert names == ["acme-coordinator", "acme-peer-1", "acme-peer-2"] * 2
    assert {d["metadata"]["namespace"] for d in _documents(out)} == {"demo"}
    assert "placeholders" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--network", "Acme"], 'the network name "Acme" must be a lowercase RFC 1035 label'),
        (["--network", "a" * 52], "must be at most 51 characters"),
        (["--network", "acme", "--peer", "coordinator"], '"coordinator" is used twice'),
        (["--network", "acme", "--peer", "x_y"], 'the node name "x_y" must be'),
        (["--network", "acme", "--service-ip", "coordinator"], "--service-ip wants NODE=IP"),
        (["--network", "acme", "--service-ip", "peer-7=10.0.0.1"], 'names "peer-7"'),
        (["--network", "acme", "--service-ip", "coordinator=nope"], "is not an IP address"),
        (["--network", "acme", "--coordinator-ip", "0.0.0.0"], "cannot be dialled"),
        (["--network", "acme", "--peers", "-1"], "--peers must be between 0 and 100"),
    ],
)
def test_cli_bad_input_is_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    assert main(["render", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
