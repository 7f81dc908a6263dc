"""Find the cluster: in-cluster config, else a kubeconfig; say which, loudly.

The sandbox is chosen one level up (``app.server``), which starts it and passes its kubeconfig.

Example::

    target = discover("auto")      # ClusterTarget(mode="kubeconfig", kubeconfig=...) or None
    cluster = await connect(target, namespace=None, settings=settings)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client, config

from app.cluster.client import Cluster
from app.cluster.retry import KubeLimits
from app.config import Settings

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ClusterConfigError(RuntimeError):
    """The configured way to reach the cluster cannot work; one sentence says why."""


@dataclass(frozen=True)
class ClusterTarget:
    mode: str  # "in-cluster" or "kubeconfig"
    kubeconfig: Path | None = None


def in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


def default_kubeconfig() -> Path | None:
    paths = os.environ.get("KUBECONFIG", "")
    if paths:
        first = Path(paths.split(os.pathsep)[0]).expanduser()
        return first
    home = Path.home() / ".kube" / "config"
    return home if home.is_file() else None


def discover(mode: str, kubeconfig: str | None = None) -> ClusterTarget | None:
    """The target for ``mode``; None means "no cluster configured: use the sandbox"."""
    if mode == "sandbox":
        return None
    if kubeconfig and mode in ("auto", "kubeconfig"):
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise ClusterConfigError(f"QAAS_KUBECONFIG names {path}, which does not exist")
        return ClusterTarget("kubeconfig", path)
    if mode in ("auto", "in-cluster") and in_cluster():
        return ClusterTarget("in-cluster")
    if mode == "in-cluster":
        raise ClusterConfigError(
            "QAAS_CLUSTER=in-cluster, but this process has no ServiceAccount token "
            f"in {SERVICE_ACCOUNT_DIR} or no KUBERNETES_SERVICE_HOST"
        )
    found = default_kubeconfig()
    if found is not None:
        if not found.is_file():
            raise ClusterConfigError(f"KUBECONFIG names {found}, which does not exist")
        return ClusterTarget("kubeconfig", found)
    if mode == "kubeconfig":
        raise ClusterConfigError(
            "QAAS_CLUSTER=kubeconfig, but neither KUBECONFIG nor ~/.kube/config names a cluster"
        )
    return None


async def connect(
    target: ClusterTarget, namespace: str | None, *, settings: Settings | None = None
) -> Cluster:
    """A Cluster for ``target``; ``settings`` give its rate budget, timeout and retries
    (``QAAS_KUBE_*``; without them, their defaults)."""
    configuration = client.Configuration()
    if target.mode == "in-cluster":
        config.load_incluster_config(client_configuration=configuration)
        own = SERVICE_ACCOUNT_DIR / "namespace"
        namespace = namespace or (own.read_text().strip() if own.is_file() else "default")
        description = f"in-cluster ({configuration.host})"
    else:
        assert target.kubeconfig is not None
        try:
            await config.load_kube_config(
                config_file=str(target.kubeconfig), client_configuration=configuration
            )
        except Exception as error:  # the loader raises many types for one cause: a bad file
            raise ClusterConfigError(
                f"cannot use kubeconfig {target.kubeconfig}: {error}"
            ) from None
        namespace = namespace or "default"
        description = f"{configuration.host} (kubeconfig {target.kubeconfig})"
    limits = KubeLimits.from_settings(settings) if settings is not None else None
    return Cluster(client.ApiClient(configuration), namespace, description, limits=limits)
