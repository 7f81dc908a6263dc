"""Fixtures for the manifests: kubectl against the sandbox, and QaaS's namespace applied."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "manifests" / "qaas" / "overlays"
QAAS_NAMESPACE = "qaas"
SERVICE_ACCOUNT = f"system:serviceaccount:{QAAS_NAMESPACE}:qaas"


# The manifests use kustomize's `labels` and `patches` fields: kustomize >= v4.2, which kubectl
# embeds from 1.22 on (Debian bookworm's kubernetes-client is 1.20, with kustomize v2.0.3).
NEEDS = "kubectl >= 1.22 (embedded kustomize >= v4.2)"


def _client_version() -> str:
    result = subprocess.run(["kubectl", "version", "--client"], capture_output=True, text=True,
                            timeout=30, check=False)  # fmt: skip
    return " ".join(result.stdout.split())


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against ``kubeconfig``; a failure shows kubectl's own words."""
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed: {result.stderr or result.stdout}"
            f"(client: {_client_version()}; the manifests need {NEEDS})"
        )
    return result


def kustomize(overlay: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders (it needs no cluster)."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{result.stderr}(client: {_client_version()}; needs {NEEDS})"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def wait_until(probe: Any, within: float, what: str) -> Any:
    """Poll a blocking ``probe`` until it returns something truthy (sync twin of eventually)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {within}s")


def _namespace_phase(kubeconfig: Path) -> str | None:
    result = kubectl(kubeconfig, "get", "namespace", QAAS_NAMESPACE, "-o",
                     "jsonpath={.status.phase}", check=False)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def _for_server(kubeconfig: Path, overlay: Path) -> str:
    """The overlay rendered for this API server. The manifests' PodDisruptionBudget is
    ``policy/v1`` (Kubernetes >= 1.21, the only version from 1.25 on); the sandbox's API server
    is 1.20, which serves the same fields as ``policy/v1beta1``."""
    objects = kustomize(overlay)
    served = kubectl(kubeconfig, "api-versions").stdout.split()
    if "policy/v1" not in served:
        for obj in objects:
            if obj["kind"] == "PodDisruptionBudget":
                obj["apiVersion"] = "policy/v1beta1"
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.fixture(scope="module")
def qaas_applied(kubeconfig: Path) -> Iterator[str]:
    """The postgres overlay really applied, the sqlite one dry-run on the server; both must pass.

    One real apply: both overlays own the same Namespace and Deployment. A namespace left
    over by an earlier run is reused, or awaited while it terminates.
    """
    if _namespace_phase(kubeconfig) == "Terminating":
        wait_until(lambda: _namespace_phase(kubeconfig) is None, 120, "old namespace qaas gone")
    kubectl(kubeconfig, "apply", "-f", "-", stdin=_for_server(kubeconfig, OVERLAYS / "postgres"))
    kubectl(kubeconfig, "apply", "-f", "-", "--dry-run=server",
            stdin=_for_server(kubeconfig, OVERLAYS / "sqlite"))  # fmt: skip
    yield QAAS_NAMESPACE
    kubectl(kubeconfig, "delete", "namespace", QAAS_NAMESPACE, "--wait=true", "--timeout=90s",
            check=False, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def service_account_kubeconfig(
    kubeconfig: Path, qaas_applied: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig that authenticates with the qaas ServiceAccount's own token.

    Kubernetes 1.20 gives every ServiceAccount a token Secret; the admin reads it.
    """

    def token_secret() -> str:
        result = kubectl(kubeconfig, "-n", qaas_applied, "get", "serviceaccount", "qaas",
                         "-o", "jsonpath={.secrets[0].name}", check=False)  # fmt: skip
        return result.stdout.strip()

    secret = wait_until(token_secret, 30, "token Secret of ServiceAccount qaas")
    encoded = kubectl(kubeconfig, "-n", qaas_applied, "get", "secret", secret,
                      "-o", "jsonpath={.data.token}").stdout  # fmt: skip
    admin = yaml.safe_load(kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    authority = cluster.get("certificate-authority")
    if authority:  # relative paths are relative to the kubeconfig they came from
        cluster["certificate-authority"] = str((kubeconfig.parent / authority).resolve())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": cluster}],
        "users": [{"name": "qaas", "user": {"token": base64.b64decode(encoded).decode()}}],
        "contexts": [{"name": "qaas", "context": {"cluster": "sandbox", "user": "qaas",
                                                  "namespace": qaas_applied}}],
        "current-context": "qaas",
    }  # fmt: skip
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
