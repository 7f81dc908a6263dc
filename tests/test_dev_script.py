"""``./dev test`` stops at the first failing check, before the suite runs.

The script runs under ``set -e``, which does not stop at a failure of any but the last command
of an ``a && b`` list: ruff's findings were printed and the run went on to a green exit. Here a
scratch copy of the project's entry point, beside the project's own installed tools, checks a
file that ruff refuses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path("app/sandbox/standin")


def _scratch_project(where: Path) -> Path:
    """The entry point, the files its set-up step fingerprints, and links to what the project
    has installed (so set-up finds nothing to do)."""
    for name in ("dev", "pyproject.toml", "package-lock.json", STANDIN / "package-lock.json"):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, where / name)
    for name in (Path(".venv"), Path("node_modules"), STANDIN / "node_modules"):
        (where / name).symlink_to(ROOT / name, target_is_directory=True)
    return where


def test_a_lint_finding_stops_the_test_command_before_anything_else(tmp_path: Path) -> None:
    project = _scratch_project(tmp_path)
    (project / "app").mkdir(exist_ok=True)
    (project / "app" / "finding.py").write_text("import os\n")  # F401: imported, never used
    environment = {**os.environ, "QAAS_TEST_DATABASES": "sqlite"}
    run = subprocess.run(
        ["bash", str(project / "dev"), "test", "--collect-only", "-q"],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode != 0, said
    assert "F401" in said, said  # ruff ran and found it
    assert "[dev]\x1b[0m mypy" not in said, said  # and the run stopped there
    assert "[dev]\x1b[0m pytest" not in said, said
