"""Start-up faults in words: `qaas serve` on a workstation says in one sentence what cannot be
used, where and what to do, and exits 69; in retry mode (a cluster, or QAAS_STARTUP_RETRY=true)
it serves /healthz, says why in /readyz and GraphQL, and comes up when the fault goes away."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

import app.server as server
from app.cli.parser import STARTUP_FAULT_EXIT
from app.config import load_settings
from app.store.migrate import upgrade
from tests.conftest import DATABASES, POSTGRES_ADMIN_URL
from tests.helpers import eventually

QAAS = Path(sys.executable).parent / "qaas"
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def qaas_serve(tmp_path: Path, **env: str) -> tuple[int, str]:
    """Run `qaas serve` as a real process in ``tmp_path`` with only the given QAAS_*/KUBECONFIG
    variables (HOME too, so no ~/.kube/config is found); its exit code and stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QAAS_")}
    clean.pop("KUBECONFIG", None)
    clean["HOME"] = str(tmp_path)
    clean["QAAS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'qaas.db'}"
    clean.update(env)
    process = await asyncio.create_subprocess_exec(
        str(QAAS), "serve", "--port", str(closed_port()), cwd=tmp_path, env=clean,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("qaas serve did not stop on the fault") from None
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def assert_one_sentence(code: int, stderr: str, *facts: str) -> str:
    assert "Traceback" not in stderr, stderr
    assert code == STARTUP_FAULT_EXIT, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("qaas: "), line
    for fact in facts:
        assert fact in line, f"{fact!r} missing from: {line}"
    return line


# -- on a workstation: one sentence, exit 69 -----------------------------------------------

Fault = Callable[[Path, int], tuple[str, list[str]]]
DATABASE_FAULTS: dict[str, Fault] = {
    "postgres-closed-port": lambda tmp, port: (
        f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{port}/qaas",
        [f"postgresql+asyncpg://postgres:***@127.0.0.1:{port}/qaas", "connection refused",
         "check that PostgreSQL runs at", "QAAS_DATABASE_URL"],
    ),
    "postgres-unknown-host": lambda tmp, port: (
        "postgresql+asyncpg://postgres:s3cret@no-such-host.invalid/qaas",
        ["postgres:***@no-such-host.invalid/qaas", "unknown host no-such-host.invalid",
         "fix the host in QAAS_DATABASE_URL"],
    ),
    "sqlite-missing-directory": lambda tmp, port: (
        f"sqlite+aiosqlite:///{tmp / 'missing' / 'qaas.db'}",
        [f"cannot open the SQLite database {tmp / 'missing' / 'qaas.db'}",
         f"the directory {tmp / 'missing'} does not exist", "QAAS_DATABASE_URL"],
    ),
    "sqlite-directory-is-a-file": lambda tmp, port: (
        f"sqlite+aiosqlite:///{tmp / 'a-file' / 'qaas.db'}",
        [f"{tmp / 'a-file'} is not a directory", "QAAS_DATABASE_URL"],
    ),
    "sqlite-unwritable-directory": lambda tmp, port: (
        f"sqlite+aiosqlite:///{tmp / 'locked' / 'qaas.db'}",
        [f"this process may not write in {tmp / 'locked'}", "QAAS_DATABASE_URL"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("fault", list(DATABASE_FAULTS))
async def test_an_unusable_database_is_one_sentence(
    fault: str, tmp_path: Path, kubeconfig: Path
) -> None:
    if fault == "sqlite-unwritable-directory" and ROOT:
        pytest.skip("root may write in any directory")
    (tmp_path / "a-file").write_text("in the way\n")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    url, facts = DATABASE_FAULTS[fault](tmp_path, closed_port())
    code, stderr = await qaas_serve(
        tmp_path, QAAS_DATABASE_URL=url, KUBECONFIG=str(kubeconfig), QAAS_NAMESPACE="default"
    )
    line = assert_one_sentence(code, stderr, *facts)
    assert "s3cret" not in line


async def test_a_database_that_does_not_exist_is_one_sentence(
    tmp_path: Path, kubeconfig: Path
) -> None:
    if "postgresql" not in DATABASES:
        pytest.skip("QAAS_TEST_DATABASES excludes postgresql")
    url = make_url(POSTGRES_ADMIN_URL).set(database="qaas_never_created")
    code, stderr = await qaas_serve(
        tmp_path, QAAS_DATABASE_URL=url.render_as_string(hide_password=False),
        KUBECONFIG=str(kubeconfig), QAAS_NAMESPACE="default",
    )  # fmt: skip
    assert_one_sentence(code, stderr, url.render_as_string(hide_password=True),
                        'database "qaas_never_created" does not exist', "create it")  # fmt: skip


KUBECONFIG_FAULTS: dict[str, tuple[str, str, list[str]]] = {
    # name: (variable, file under tmp_path, facts; {path} is that file)
    "missing": ("KUBECONFIG", "nowhere.yaml",
                ["KUBECONFIG names {path}, which does not exist", "fix KUBECONFIG"]),
    "a-directory": ("KUBECONFIG", "folder", ["KUBECONFIG names {path}, which is not a file"]),
    "malformed": ("KUBECONFIG", "malformed.yaml",
                  ["cannot use the kubeconfig {path}: it is not valid YAML", "line 2",
                   "fix the file"]),
    "not-a-kubeconfig": ("KUBECONFIG", "list.yaml",
                         ["cannot use the kubeconfig {path}: it is not a usable kubeconfig"]),
    "unreadable": ("KUBECONFIG", "secret.yaml",
                   ["KUBECONFIG names {path}, which is not readable by this process"]),
    "qaas-kubeconfig-missing": ("QAAS_KUBECONFIG", "nowhere.yaml",
                                ["QAAS_KUBECONFIG names {path}, which does not exist",
                                 "fix QAAS_KUBECONFIG"]),
}  # fmt: skip


@pytest.mark.parametrize("fault", list(KUBECONFIG_FAULTS))
async def test_an_unusable_kubeconfig_is_one_sentence(fault: str, tmp_path: Path) -> None:
    if fault == "unreadable" and ROOT:
        pytest.skip("root may read any file")
    variable, name, facts = KUBECONFIG_FAULTS[fault]
    (tmp_path / "folder").mkdir()
    (tmp_path / "malformed.yaml").write_text("clusters: [\n")
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    (tmp_path / "secret.yaml").write_text("apiVersion: v1\n")
    (tmp_path / "secret.yaml").chmod(0)
    path = tmp_path / name
    code, stderr = await qaas_serve(tmp_path, **{variable: str(path)})
    assert_one_sentence(code, stderr, *(fact.format(path=path) for fact in facts))
    assert not (tmp_path / "qaas.db").exists()  # the cluster is checked first: nothing written


def _kubeconfig_like(source: Path, target: Path, server: str | None = None,
                     token: str | None = None) -> Path:  # fmt: skip
    config = yaml.safe_load(source.read_text())
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    if token is not None:
        config["users"][0]["user"] = {"token": token}
    target.write_text(yaml.safe_dump(config))
    return target


def _server_of(kubeconfig: Path) -> str:
    return str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


async def test_an_apiserver_that_refuses_connections_is_one_sentence(
    tmp_path: Path, kubeconfig: Path
) -> None:
    port = closed_port()
    closed = _kubeconfig_like(kubeconfig, tmp_path / "closed.yaml", f"https://127.0.0.1:{port}")
    code, stderr = await qaas_serve(tmp_path, KUBECONFIG=str(closed))
    assert_one_sentence(
        code, stderr, f"cannot reach the Kubernetes API at https://127.0.0.1:{port}",
        f"(kubeconfig {closed})", "connection refused", "check that the cluster runs",
    )  # fmt: skip


async def test_an_apiserver_that_rejects_the_credentials_is_one_sentence(
    tmp_path: Path, kubeconfig: Path
) -> None:
    forged = _kubeconfig_like(kubeconfig, tmp_path / "forged.yaml", token="not-a-real-token")
    code, stderr = await qaas_serve(tmp_path, KUBECONFIG=str(forged))
    assert_one_sentence(
        code, stderr, f"the Kubernetes API at {_server_of(kubeconfig)} (kubeconfig {forged})",
        "rejected QaaS's credentials (401 Unauthorized)", "give it valid ones",
    )  # fmt: skip


async def test_an_apiserver_that_denies_the_namespace_is_one_sentence(
    tmp_path: Path, kubeconfig: Path, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    account = await core.read_namespaced_service_account("default", namespace)
    secret = await core.read_namespaced_secret(account.secrets[0].name, namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    powerless = _kubeconfig_like(kubeconfig, tmp_path / "powerless.yaml", token=token)
    code, stderr = await qaas_serve(tmp_path, KUBECONFIG=str(powerless), QAAS_NAMESPACE=namespace)
    assert_one_sentence(
        code, stderr, f"does not let QaaS list Services in namespace {namespace} (403 Forbidden",
        f"system:serviceaccount:{namespace}:default", "bind the ClusterRole qaas-tenant",
    )  # fmt: skip


# -- retry mode: the process stays, says why, and comes up ----------------------------------


async def test_retry_mode_says_why_until_the_database_comes(
    kubeconfig: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "postgresql" not in DATABASES:
        pytest.skip("QAAS_TEST_DATABASES excludes postgresql")
    monkeypatch.setattr(server, "RETRY_MAX_SECONDS", 1.0)  # the cap's value is not on trial
    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"qaas_test_{uuid.uuid4().hex[:12]}"
    url = admin.set(database=name).render_as_string(hide_password=False)
    settings = load_settings(
        database_url=url, kubeconfig=str(kubeconfig), cluster="kubeconfig",
        namespace=namespace, startup_retry=True, resync_seconds=0.5, unready_after_seconds=0.5,
    )  # fmt: skip
    application = server.create_app(settings)
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    transport = httpx.ASGITransport(app=application)
    try:
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(transport=transport, base_url="http://qaas.test") as http,
        ):
            assert (await http.get("/healthz")).status_code == 200  # the lifespan returned

            async def readyz_says(words: str) -> dict[str, str] | None:
                response = await http.get("/readyz")
                body: dict[str, str] = response.json()
                said = body["database"] + body["events"]
                return body if response.status_code == 503 and words in said else None

            body = await eventually(lambda: readyz_says(f'database "{name}" does not exist'))
            assert body["cluster"] == "ok"
            # The event bus cannot listen either, and says so once that has lasted too long.
            await eventually(lambda: readyz_says("cannot connect to listen"), within=10)
            refused = await http.post("/graphql", json={"query": "{ viewer { role } }"},
                                      headers={"Authorization": "Bearer qaas_x"})  # fmt: skip
            assert refused.status_code == 503
            error = refused.json()["errors"][0]
            assert error["extensions"]["code"] == "UNAVAILABLE"
            assert f'database "{name}" does not exist' in error["message"]
            assert "Traceback" not in refused.text

            async with engine.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            await eventually(lambda: readyz_says("is at revision none"), within=20)
            await upgrade(url)

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready, within=20)
            assert (await http.get("/readyz")).json()["events"] == "ok"
            answered = await http.post("/graphql", json={"query": "{ viewer { role } }"})
            assert answered.status_code == 401  # ready: the guard refuses the missing token
            assert answered.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()


async def test_retry_mode_names_each_fault_and_stops_cleanly(
    tmp_path: Path, kubeconfig: Path, namespace: str
) -> None:
    forged = _kubeconfig_like(kubeconfig, tmp_path / "forged.yaml", token="not-a-real-token")
    port = closed_port()
    settings = load_settings(
        database_url=f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{port}/qaas",
        kubeconfig=str(forged), cluster="kubeconfig", namespace=namespace, startup_retry=True,
    )  # fmt: skip
    application = server.create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://qaas.test") as http,
    ):

        async def both_named() -> dict[str, str] | None:
            response = await http.get("/readyz")
            body: dict[str, str] = response.json()
            named = "connection refused" in body["database"] and "401" in body["cluster"]
            return body if response.status_code == 503 and named else None

        body = await eventually(both_named)
        assert f"postgres:***@127.0.0.1:{port}/qaas" in body["database"]
        assert "s3cret" not in str(body)
        assert "rejected QaaS's credentials" in body["cluster"]
        assert (await http.get("/healthz")).status_code == 200
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200  # GraphiQL's page needs neither
        refused = await http.post("/graphql", json={"query": "{ viewer { role } }"})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        message = refused.json()["errors"][0]["message"]
        assert "connection refused" in message
        assert "401 Unauthorized" in message
    retrying = [t for t in asyncio.all_tasks() if t.get_name() == "startup-retry"]
    assert retrying == []  # shutdown cancelled the retrying task


async def test_a_websocket_before_start_up_is_closed_with_try_again_later(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
                             startup_retry=True)  # fmt: skip
    application = server.create_app(settings)  # its lifespan not run: start-up not done
    incoming: list[dict[str, object]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return incoming.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/graphql",
        "raw_path": b"/graphql", "root_path": "", "query_string": b"", "headers": [],
        "subprotocols": ["graphql-transport-ws"], "server": ("qaas.test", 80),
        "client": ("127.0.0.1", 1),
    }  # fmt: skip
    await application(scope, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[0]["subprotocol"] == "graphql-transport-ws"
    assert sent[1]["code"] == 1013  # try again later
    assert "not ready" in str(sent[1]["reason"])
