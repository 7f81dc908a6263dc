"""The shape of the code base: SQL only in the store, no module too big to read.

The order of layers itself is held by import-linter's contracts (pyproject.toml), which
`./dev test` runs before pytest.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    path
    for package in ("app", "schema")
    for path in (ROOT / package).rglob("*.py")
    if "__pycache__" not in path.parts
)
STORE = ROOT / "app" / "store"
MAX_LINES = 400

# What writes or runs SQL: statement builders, ORM loading options and the session's calls.
STATEMENTS = {"select", "insert", "update", "delete", "func", "text", "and_", "or_", "exists"}
SESSION_CALLS = {"execute", "scalar", "scalars", "get", "add", "add_all", "flush", "delete"}


def _sql_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("sqlalchemy")
        ):
            names = {alias.name for alias in node.names}
            if node.module.startswith("sqlalchemy.orm") or names & STATEMENTS:
                found.append(f"line {node.lineno}: from {node.module} import {sorted(names)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
        ):
            found.append(f"line {node.lineno}: session.{node.func.attr}(...)")
    return found


def _outside_store() -> list[Path]:
    return [p for p in SOURCES if STORE not in p.parents and "sandbox" not in p.parts]


def test_the_layout_test_sees_the_code() -> None:
    assert len(_outside_store()) > 40
    assert _sql_in(STORE / "desired.py"), "the probe must recognise the store's own SQL"


def test_sql_is_written_only_in_the_store() -> None:
    offenders = {str(p.relative_to(ROOT)): found for p in _outside_store() if (found := _sql_in(p))}
    assert offenders == {}


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in SOURCES}
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES} == {}
