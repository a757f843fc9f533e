"""The core stands alone: remove the three demo apps in four deletions each, and the project still runs.

A scratch copy of the project loses, for each of chat, uploads and ticker,
exactly what README's "Start from the core alone" names: the app's folder,
its INSTALLED_APPS line, its include() line in project/urls.py and its
tests/<app>/ folder. There ``manage.py check`` passes, ``migrate`` on a new
SQLite database creates Django's tables and the core's and no room, message
or upload table, and the core's fast tests pass, with this same Python.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

DEMOS = ("chat", "uploads", "ticker")
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


def delete_line(path: Path, line: str) -> None:
    """Delete the one line of ``path`` that reads ``line`` (stripped); fail unless there is exactly one."""
    lines = path.read_text().splitlines(keepends=True)
    matches = [n for n, text in enumerate(lines) if text.strip() == line]
    assert len(matches) == 1, f"{path.name}: expected one line {line!r}, found {len(matches)}"
    del lines[matches[0]]
    path.write_text("".join(lines))


def remove_demo(project: Path, app: str) -> None:
    """The four deletions of README's "Start from the core alone", and nothing else."""
    shutil.rmtree(project / app)
    delete_line(project / "project" / "settings.py", f'"{app}",')
    delete_line(project / "project" / "urls.py", f'path("", include("{app}.urls")),')
    shutil.rmtree(project / "tests" / app)


def run(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["SQLITE_PATH"] = str(project / "db.sqlite3")
    result = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return result


@pytest.mark.timeout(1800)
def test_the_project_without_its_demos_checks_migrates_to_core_tables_and_passes_its_tests(tmp_path):
    project = tmp_path / "project"
    copy_project(project)
    # The same virtualenv: `make` in the copy (the Makefile's own tests) finds it set up.
    if (ROOT / ".venv").is_dir():
        (project / ".venv").symlink_to(ROOT / ".venv")
    for app in DEMOS:
        remove_demo(project, app)

    run(project, "manage.py", "check", "--fail-level", "WARNING")
    run(project, "manage.py", "migrate", "--noinput")
    with sqlite3.connect(project / "db.sqlite3") as database:
        tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"auth_user", "django_session", "realtime_apitoken"} <= tables
    assert not [t for t in tables if any(word in t for word in ("room", "message", "upload"))], sorted(tables)
    # No migration of the core refers to an app that is gone, and none is left unapplied.
    run(project, "manage.py", "migrate", "--check")

    tests = run(project, "-m", "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider", timeout=1500)
    assert " passed" in tests.stdout and " failed" not in tests.stdout, tests.stdout[-3000:]
