"""The core stands alone: it imports no app, names none, and apps reach it only through its public API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import realtime

ROOT = Path(__file__).resolve().parents[2]
CORE = "realtime"
# The project's apps: every top-level package with an apps.py, the core aside.
APPS = tuple(sorted(path.parent.name for path in ROOT.glob("*/apps.py") if path.parent.name != CORE))


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


def test_the_apps_are_found():
    assert CORE not in APPS and all((ROOT / app / "__init__.py").is_file() for app in APPS)


def test_every_public_name_resolves():
    for name in realtime.__all__:
        assert getattr(realtime, name) is not None, name


# -- the core names no app ---------------------------------------------------------------------
# Words of the demo apps' concepts (their names too). "message" alone is not one of them (ASGI and
# the channel layer have messages); a message id is the chat's. Any other app's name may be a plain
# word the core uses for itself (a generated "poll" app, the bus's polling): that the core never
# imports such an app is checked above.
APP_WORDS = {"room", "rooms", "chat", "chats", "upload", "uploads", "ticker", "tickers", "lobby"}
APP_IDENTIFIERS = re.compile(r"\bmessage_?ids?\b", re.IGNORECASE)
# Django's own setting names that contain such a word.
ALLOWED = {"DATA_UPLOAD_MAX_MEMORY_SIZE", "DATA_UPLOAD_MAX_NUMBER_FIELDS", "DATA_UPLOAD_MAX_NUMBER_FILES"}
# The migrations that an earlier layout applied, kept only for its databases (their squash replaces them
# and names them: their names are history too).
REPLACED = re.compile(r"realtime/migrations/000[1-4]_(?!squashed)")
ALLOWED |= {
    path.stem.split("_", 1)[1]
    for path in (ROOT / CORE / "migrations").glob("000[1-4]_*.py")
    if REPLACED.search(str(path.relative_to(ROOT)))
}


def word_parts(token: str) -> list[str]:
    """Split an identifier (snake_case, kebab-case, camelCase, CAPS) into lowercase words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", token.replace("_", " ").replace("-", " "))
    return spaced.lower().split()


def app_names_in(path: Path) -> list[str]:
    """Return each ``line: token`` of ``path`` that names an app or one of the demo apps' concepts."""
    words = APP_WORDS
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for token in re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", line):
            if token.strip("_") not in ALLOWED and words & set(word_parts(token)):
                found.append(f"{number}: {token}")
        found += [f"{number}: {match}" for match in APP_IDENTIFIERS.findall(line)]
    return found


def core_files() -> list[str]:
    """Return the core's code, styles, scripts and templates (and the project's templates), by path."""
    paths = [*(ROOT / CORE).rglob("*"), *(ROOT / "templates").rglob("*")]
    return sorted(
        str(path.relative_to(ROOT))
        for path in paths
        if path.suffix in {".py", ".css", ".js", ".html"}
        and "__pycache__" not in path.parts
        and not REPLACED.search(str(path.relative_to(ROOT)))
    )


def test_the_word_check_finds_app_names_in_any_spelling(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def _has_room(): pass\nclass TickerTopic: ...\n.room-title {}\nDATA_UPLOAD_MAX_NUMBER_FIELDS\n"
    )
    assert app_names_in(sample) == ["1: _has_room", "2: TickerTopic", "3: room-title"]


def test_the_core_names_no_app():
    offenders = {path: app_names_in(ROOT / path) for path in core_files()}
    assert {path: names for path, names in offenders.items() if names} == {}
