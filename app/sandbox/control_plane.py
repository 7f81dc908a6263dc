"""Run a real Kubernetes control plane on loopback: etcd, apiserver, controllers, scheduler.

Ports are picked free and the address ranges are the sandbox's slot's (`app.sandbox.slots`), so
several sandboxes (a developer's and a test run's) run side by side.
etcd keeps its data on tmpfs (etcd 3.4 has no --unsafe-no-fsync). The apiserver serves TLS on its
secure port with a certificate from our own CA, authenticates a static admin token and
authorizes with Node,RBAC, exactly like a production cluster would.

Example::

    plane = ControlPlane(binaries, Path("/tmp/sbx"), claim())
    plane.start()          # returns once /readyz answers ok
    plane.kubeconfig       # Path to a kubeconfig for the admin user
    plane.stop()
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from app.sandbox.build import Binaries
from app.sandbox.pki import Credentials, write_credentials
from app.sandbox.processes import free_ports, pid_alive, spawn, stop
from app.sandbox.slots import Slot

NODE_PORT_RANGE = "30000-32767"
ETCD_DIR_PREFIX = "qaas-etcd-"


def _fresh_etcd_dir() -> Path:
    """A data folder for etcd on tmpfs (etcd fsyncs every write), named after our pid.

    Folders of owners that died without cleaning up (SIGKILL) are removed here, so tmpfs does
    not fill up with dead sandboxes.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else Path(tempfile.gettempdir())
    for stale in base.glob(f"{ETCD_DIR_PREFIX}*"):
        owner = stale.name.removeprefix(ETCD_DIR_PREFIX)
        if owner.isdigit() and not pid_alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    path = base / f"{ETCD_DIR_PREFIX}{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path


class ControlPlaneError(RuntimeError):
    """A control-plane process would not start or become ready; the message names it and its log."""


class ControlPlane:
    def __init__(self, binaries: Binaries, state_dir: Path, slot: Slot) -> None:
        self.binaries = binaries
        self.slot = slot
        self.state_dir = state_dir
        self.logs = state_dir / "logs"
        self.kubeconfig = state_dir / "kubeconfig"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.etcd_dir: Path | None = None
        self.api_port = 0
        self.etcd_url = ""
        self.creds: Credentials | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 60.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.creds = creds = write_credentials(
            self.state_dir / "pki", service_ip=self.slot.kubernetes_service_ip
        )
        etcd_client, etcd_peer, self.api_port = free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.etcd_dir = _fresh_etcd_dir()
        try:
            self._start_etcd(etcd_client, etcd_peer)
            self._start_apiserver(creds, etcd_client)
            self._wait_ready(creds, timeout)
            self._write_kubeconfig(creds)
            self._start_controllers(creds)
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self, client: int, peer: int) -> None:
        assert self.etcd_dir is not None
        self.procs["etcd"] = spawn(
            [
                str(self.binaries.etcd),
                "--name=sandbox",
                f"--data-dir={self.etcd_dir}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=sandbox=http://127.0.0.1:{peer}",
                "--log-level=warn",
            ],
            self.logs / "etcd.log",
        )

    def _start_apiserver(self, creds: Credentials, etcd_client: int) -> None:
        self.procs["kube-apiserver"] = spawn(
            [
                str(self.binaries.apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--insecure-port=0",
                f"--tls-cert-file={creds.serving_cert}",
                f"--tls-private-key-file={creds.serving_key}",
                f"--client-ca-file={creds.ca_cert}",
                f"--token-auth-file={creds.token_file}",
                f"--service-account-key-file={creds.sa_pub}",
                f"--service-account-signing-key-file={creds.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={self.slot.service_cidr}",
                f"--service-node-port-range={NODE_PORT_RANGE}",
                "--authorization-mode=Node,RBAC",
                # pods/log: the apiserver calls the node's kubelet at its InternalIP, as itself.
                f"--kubelet-client-certificate={creds.kubelet_client_cert}",
                f"--kubelet-client-key={creds.kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--profiling=false",
                # Pod watches are served by etcd itself, not the apiserver's watch cache, so a
                # compaction of etcd (see Sandbox.compact) expires old versions with a real
                # 410 Gone, as a busy production cluster does: tests exercise the relist path.
                "--watch-cache-sizes=pods#0",
                "--v=0",
            ],
            self.logs / "kube-apiserver.log",
        )

    def _start_controllers(self, creds: Credentials) -> None:
        common = [f"--kubeconfig={self.kubeconfig}", "--port=0", "--secure-port=0", "--v=0"]
        self.procs["kube-controller-manager"] = spawn(
            [
                str(self.binaries.controller_manager),
                *common,
                # The node lifecycle controller would evict pods from our simulated node.
                "--controllers=*,-nodelifecycle",
                "--leader-elect=false",
                f"--service-account-private-key-file={creds.sa_key}",
                f"--root-ca-file={creds.ca_cert}",
                f"--cluster-cidr={self.slot.pod_cidr}",
                f"--service-cluster-ip-range={self.slot.service_cidr}",
                "--use-service-account-credentials=true",
            ],
            self.logs / "kube-controller-manager.log",
        )
        self.procs["kube-scheduler"] = spawn(
            [str(self.binaries.scheduler), *common, "--leader-elect=false"],
            self.logs / "kube-scheduler.log",
        )

    def _wait_ready(self, creds: Credentials, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(creds.ca_cert))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {creds.admin_token}"}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode}; see {self.logs / name}.log"
                    )
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver was not ready within {timeout:.0f}s; "
            f"see {self.logs / 'kube-apiserver.log'}"
        )

    def _write_kubeconfig(self, creds: Credentials) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "qaas-sandbox",
                    "cluster": {"server": self.server, "certificate-authority": str(creds.ca_cert)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": creds.admin_token}}],
            "contexts": [
                {
                    "name": "qaas-sandbox",
                    "context": {"cluster": "qaas-sandbox", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "qaas-sandbox",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def stop(self) -> None:
        """Stop every process, newest first, and remove etcd's data."""
        for name in reversed(list(self.procs)):
            stop(self.procs.pop(name))
        if self.etcd_dir is not None:
            shutil.rmtree(self.etcd_dir, ignore_errors=True)
            self.etcd_dir = None
