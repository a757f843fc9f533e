"""A scratch copy of the project, edited and run there with this same Python (imports no app).

For tests that change the tree itself: remove the demos, generate an app.
Commands in the copy get a SQLite database of their own, and nothing of
the suite's database, Redis or settings module, unless a test passes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Settings the copy chooses for itself: a database of its own, no inherited test database name.
UNSET = ("DATABASE_URL", "DJANGO_TEST_DATABASE_NAME", "SQLITE_PATH", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


def copy_project(target: Path) -> None:
    """Copy the project's files (tracked, or new and not ignored) to ``target``; no .venv, no database."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # a file deleted but not yet committed is listed and absent
            (target / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.relative_to(ROOT))


def the_line(lines: list[str], line: str, path: Path) -> int:
    """Return the index of the one line of ``lines`` that reads ``line`` (stripped); fail unless one."""
    matches = [n for n, text in enumerate(lines) if text.strip() == line]
    assert len(matches) == 1, f"{path.name}: expected one line {line!r}, found {len(matches)}"
    return matches[0]


def delete_line(path: Path, line: str) -> None:
    """Delete the one line of ``path`` that reads ``line`` (stripped)."""
    lines = path.read_text().splitlines(keepends=True)
    del lines[the_line(lines, line, path)]
    path.write_text("".join(lines))


def insert_after(path: Path, line: str, new: str) -> None:
    """Add ``new`` after the one line of ``path`` that reads ``line`` (stripped), indented as that one."""
    lines = path.read_text().splitlines(keepends=True)
    index = the_line(lines, line, path)
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines.insert(index + 1, f"{indent}{new.strip()}\n")
    path.write_text("".join(lines))


def run(project: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None):
    """Run ``python *args`` in ``project`` (its own SQLite file, plus ``env``); fail with its output."""
    environ = {k: v for k, v in os.environ.items() if k not in UNSET}
    environ["SQLITE_PATH"] = str(project / "db.sqlite3")
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, *args], cwd=project, env=environ, capture_output=True, text=True, timeout=timeout
    )
    output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return result
