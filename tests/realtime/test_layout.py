"""The core stands on its own: it imports no app, and apps reach it only through its public API."""

from __future__ import annotations

import ast
from pathlib import Path

import realtime

ROOT = Path(__file__).resolve().parents[2]
APPS = ("chat", "uploads", "ticker")


def imports(path: Path) -> set[str]:
    """Return the modules a Python file imports (absolute names; relative ones as written)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def python_files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def test_the_core_imports_no_app():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.split(".")[0] in APPS)
        for path in python_files("realtime")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_apps_import_the_core_only_through_its_public_api():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.startswith("realtime."))
        for app in APPS
        for path in python_files(app)
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_every_public_name_resolves():
    for name in realtime.__all__:
        assert getattr(realtime, name) is not None, name
