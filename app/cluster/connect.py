"""Find the cluster: in-cluster config, else a kubeconfig; say which, loudly.

The sandbox is chosen one level up (``app.server``), which starts it and passes its kubeconfig.

Example::

    target = discover("auto")      # ClusterTarget(mode="kubeconfig", kubeconfig=...) or None
    cluster = await connect(target, namespace=None, settings=settings)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from app.cluster.client import Cluster
from app.cluster.retry import KubeLimits
from app.config import Settings
from app.domain.text import one_line

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CHECK_TIMEOUT_SECONDS = 10
CHECK_ATTEMPTS = 5
# Answers that say "not now" rather than "no": the start-up check tries again on these.
PASSING_STATUSES = frozenset({429, 500, 502, 503, 504})


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
        return _kubeconfig_file(Path(kubeconfig).expanduser(), "QAAS_KUBECONFIG")
    if mode in ("auto", "in-cluster") and in_cluster():
        return ClusterTarget("in-cluster")
    if mode == "in-cluster":
        raise ClusterConfigError(
            "QAAS_CLUSTER=in-cluster, but this process has no ServiceAccount token "
            f"in {SERVICE_ACCOUNT_DIR} or no KUBERNETES_SERVICE_HOST"
        )
    found = default_kubeconfig()
    if found is not None:
        return _kubeconfig_file(found, "KUBECONFIG" if os.environ.get("KUBECONFIG") else None)
    if mode == "kubeconfig":
        raise ClusterConfigError(
            "QAAS_CLUSTER=kubeconfig, but neither KUBECONFIG nor ~/.kube/config names a cluster"
        )
    return None


def _kubeconfig_file(path: Path, variable: str | None) -> ClusterTarget:
    """``path`` if it is a file this process may read, else one sentence: what, where, what to do
    (``variable`` is the setting that named it; None for ~/.kube/config)."""
    if not path.exists():
        problem = "does not exist"
    elif not path.is_file():
        problem = "is not a file"
    elif not os.access(path, os.R_OK):
        problem = "is not readable by this process"
    else:
        return ClusterTarget("kubeconfig", path)
    if variable is None:
        raise ClusterConfigError(f"the kubeconfig {path} {problem}; fix it, or set QAAS_KUBECONFIG")
    others = "KUBECONFIG, " if variable == "QAAS_KUBECONFIG" else ""
    raise ClusterConfigError(
        f"{variable} names {path}, which {problem}; fix {variable}, or unset it to use "
        f"{others}~/.kube/config or the local sandbox"
    )


async def connect(
    target: ClusterTarget, namespace: str | None, *, settings: Settings | None = None
) -> Cluster:
    """A Cluster for ``target``; ``settings`` give its rate budget, timeout and retries
    (``QAAS_KUBE_*``; without them, their defaults)."""
    configuration = client.Configuration()
    if target.mode == "in-cluster":
        try:
            config.load_incluster_config(client_configuration=configuration)
        except Exception as error:  # a missing or empty token or CA file, a bad host
            raise ClusterConfigError(
                f"cannot use the in-cluster configuration: {one_line(error)}; check the pod's "
                f"ServiceAccount token in {SERVICE_ACCOUNT_DIR} and KUBERNETES_SERVICE_HOST"
            ) from None
        own = SERVICE_ACCOUNT_DIR / "namespace"
        namespace = namespace or (own.read_text().strip() if own.is_file() else "default")
        description = f"{configuration.host} (in-cluster ServiceAccount)"
    else:
        assert target.kubeconfig is not None
        try:
            await config.load_kube_config(
                config_file=str(target.kubeconfig), client_configuration=configuration
            )
        except Exception as error:  # the loader raises many types for one cause: a bad file
            raise ClusterConfigError(
                f"cannot use the kubeconfig {target.kubeconfig}: {_loader_problem(error)}; fix "
                "the file, or point QAAS_KUBECONFIG or KUBECONFIG at another"
            ) from None
        namespace = namespace or "default"
        description = f"{configuration.host} (kubeconfig {target.kubeconfig})"
    limits = KubeLimits.from_settings(settings) if settings is not None else None
    return Cluster(client.ApiClient(configuration), namespace, description, limits=limits)


async def check_access(cluster: Cluster) -> None:
    """One cheap authenticated call, of a kind QaaS makes all the time: list (at most one of) the
    Services in its namespace. An apiserver that cannot be reached, rejects the credentials (401)
    or denies the right (403) is a ``ClusterConfigError`` with one sentence, at start-up rather
    than at the first reconcile. A passing hiccup (429, 5xx) is tried again a few times first;
    nothing else is retried here: the caller decides whether to try again."""
    where = cluster.description
    api = client.CoreV1Api(cluster.api_client)
    for attempt in range(CHECK_ATTEMPTS):
        try:
            response = await api.list_namespaced_service(
                cluster.namespace, limit=1, _preload_content=False,
                _request_timeout=CHECK_TIMEOUT_SECONDS,
            )  # fmt: skip
            status, body = response.status, await response.text()
        except ApiException as error:
            status, body = error.status, error.body
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise ClusterConfigError(
                f"cannot reach the Kubernetes API at {where}: {_network_problem(error)}; check "
                "that the cluster runs and that its address and certificate authority are right"
            ) from None
        if status not in PASSING_STATUSES or attempt == CHECK_ATTEMPTS - 1:
            break
        await asyncio.sleep(0.25 * 2**attempt * random.uniform(0.5, 1.0))
    if status < 400:
        return
    said = _status_message(body)
    if status == 401:
        detail = "" if said.lower() == "unauthorized" else f": {said}"
        raise ClusterConfigError(
            f"the Kubernetes API at {where} rejected QaaS's credentials (401 Unauthorized"
            f"{detail}); give it valid ones (a current token or client certificate)"
        )
    if status == 403:
        raise ClusterConfigError(
            f"the Kubernetes API at {where} does not let QaaS list Services in namespace "
            f"{cluster.namespace} (403 Forbidden: {said}); bind the ClusterRole qaas-tenant "
            "there (manifests/qaas), or set QAAS_NAMESPACE to a namespace it may use"
        )
    raise ClusterConfigError(
        f"the Kubernetes API at {where} answered {status} when QaaS listed Services in "
        f"namespace {cluster.namespace} ({said}); check the cluster"
    )


def _loader_problem(error: Exception) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return (
            f"it is not valid YAML ({error.problem} at line {mark.line + 1}, "
            f"column {mark.column + 1})"
        )
    if isinstance(error, OSError):
        return f"it cannot be read ({error.strerror or error})"
    return f"it is not a usable kubeconfig ({one_line(error)})"


def _network_problem(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"its TLS certificate is not trusted ({one_line(error.certificate_error)})"
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS failed ({one_line(error)})"
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"unknown host ({cause.strerror})"
    if isinstance(cause, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS} s"
    return one_line(cause)


def _status_message(body: object) -> str:
    """The ``message`` of the apiserver's Status object, else the body itself, on one line."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return one_line(body) or "no message"
    if isinstance(body, dict) and body.get("message"):
        return one_line(str(body["message"]))
    return one_line(str(body)) or "no message"
