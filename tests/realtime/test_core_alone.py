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
from pathlib import Path

import pytest

from tests.scratch import ROOT, copy_project, delete_line, run

pytestmark = pytest.mark.slow

DEMOS = ("chat", "uploads", "ticker")


def remove_demo(project: Path, app: str) -> None:
    """The four deletions of README's "Start from the core alone", and nothing else."""
    shutil.rmtree(project / app)
    delete_line(project / "project" / "settings.py", f'"{app}",')
    delete_line(project / "project" / "urls.py", f'path("", include("{app}.urls")),')
    shutil.rmtree(project / "tests" / app)


@pytest.mark.timeout(1800)
def test_the_project_without_its_demos_checks_migrates_to_core_tables_and_passes_its_tests(tmp_path):
    project = tmp_path / "project"
    copy_project(project)
    # The same virtualenvs: `make` in the copy (the Makefile's own tests) finds the one it is told
    # to use (VENV: .venv, or .venv-latest under make test-latest) set up, and installs nothing.
    for venv in {".venv", os.environ.get("VENV", ".venv")}:
        if (ROOT / venv).is_dir():
            (project / venv).symlink_to(ROOT / venv)
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
