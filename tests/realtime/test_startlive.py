"""``manage.py startlive <name>``: a new live feature that passes its own tests, or a clear refusal.

The fast tests generate into a temporary folder and refuse bad names. The
slow one does what a developer does, in a scratch copy of the project:
generate ``poll``, add the two printed lines, check, migrate, lint, and run
the new app's tests (on PostgreSQL too when the suite runs there), with the
layout test finding the new app by itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from realtime.scaffold import placeholders
from tests.realtime.echo import EchoTopic
from tests.scratch import ROOT, copy_project, insert_after, run

GENERATED = {
    "{name}/__init__.py",
    "{name}/apps.py",
    "{name}/models.py",
    "{name}/migrations/__init__.py",
    "{name}/migrations/0001_initial.py",
    "{name}/state.py",
    "{name}/topic.py",
    "{name}/views.py",
    "{name}/urls.py",
    "{name}/routing.py",
    "{name}/templates/{name}/page.html",
    "{name}/static/{name}/{name}.js",
    "{name}/static/{name}/{name}.css",
    "tests/{name}/__init__.py",
    "tests/{name}/test_{name}.py",
}


def startlive(*args: str) -> str:
    """Run the command in-process; return what it printed."""
    out = StringIO()
    call_command("startlive", *args, stdout=out)
    return out.getvalue()


def files_under(folder: Path) -> set[str]:
    """Return the files under ``folder``, as paths relative to it."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def ruff(folder: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    """Run ruff on ``folder`` with the project's settings (the new app and ``realtime`` are first-party)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "--config", str(ROOT / "pyproject.toml")]
        + ["--config", f'lint.isort.known-first-party = ["realtime", "tests", "{name}"]', name, "tests"],
        cwd=folder,
        capture_output=True,
        text=True,
    )


# -- generating ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["poll", "zq", "team_scores2", "a_very_long_name_of_24ch"])
def test_it_writes_the_app_and_its_tests_which_pass_ruff_and_prints_the_two_lines(tmp_path, name):
    printed = startlive(name, "--directory", str(tmp_path))
    assert files_under(tmp_path) == {path.format(name=name) for path in GENERATED}
    lines = [line.strip() for line in printed.splitlines()]
    assert f'"{name}",' in lines and f'path("", include("{name}.urls")),' in lines
    for args in (["check"], ["format", "--check"]):
        result = ruff(tmp_path, name, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    source = "".join((tmp_path / path).read_text() for path in files_under(tmp_path))
    assert [mark for mark in placeholders(name) if mark in source] == []


def test_the_generated_app_imports_the_core_only_through_its_public_api(tmp_path):
    startlive("poll", "--directory", str(tmp_path))
    imported = "\n".join((tmp_path / "poll" / path).read_text() for path in files_under(tmp_path / "poll"))
    assert "from realtime import" in imported and "realtime." not in imported.replace("realtime/", "")


def test_the_page_has_no_inline_script_or_style(tmp_path):
    startlive("poll", "--directory", str(tmp_path))
    page = (tmp_path / "poll" / "templates" / "poll" / "page.html").read_text()
    assert "<style" not in page and not re.search(r"\s(style|on[a-z]+)\s*=", page)
    scripts = page.count("<script")
    assert scripts == page.count('<script src="{% static') and "json_script" in page


# -- refusing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("9lives", "not a valid Python identifier"),
        ("live-poll", "not a valid Python identifier"),
        ("class", "Python keyword"),
        ("Poll", "lowercase ASCII"),
        ("café", "lowercase ASCII"),
        ("live__poll", "single underscores"),
        ("a_very_long_name_of_25chs", "at most 24"),
        ("realtime", "installed app"),
        ("sessions", "installed app (django.contrib.sessions)"),
        ("json", "existing Python module"),
        (EchoTopic.kind, "kind of an installed app's topic"),  # the group names would meet
        ("home", "URL named 'home'"),
        ("api", "serves /api/"),
    ],
)
def test_a_bad_name_is_refused_with_its_reason_and_nothing_written(tmp_path, name, reason):
    with pytest.raises(CommandError, match="Nothing written") as refused:
        startlive(name, "--directory", str(tmp_path))
    assert reason in str(refused.value)
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("where", ["{name}", "tests/{name}"])
def test_an_existing_directory_is_refused_and_left_alone(tmp_path, where):
    (tmp_path / where.format(name="poll") / "mine.txt").parent.mkdir(parents=True)
    (tmp_path / where.format(name="poll") / "mine.txt").write_text("mine")
    with pytest.raises(CommandError, match="already exists"):
        startlive("poll", "--directory", str(tmp_path))
    assert files_under(tmp_path) == {where.format(name="poll") + "/mine.txt"}


def test_the_default_directory_is_the_project_root_and_a_refusal_leaves_it_as_it_was():
    before = sorted(path.name for path in ROOT.iterdir())
    with pytest.raises(CommandError, match="installed app"):
        startlive("realtime")
    assert sorted(path.name for path in ROOT.iterdir()) == before


# -- end to end, in a scratch copy -----------------------------------------------------------------


def fingerprint(project: Path) -> dict[str, str]:
    """Return each file of ``project`` (caches aside) with a hash of its content."""
    return {
        str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_startlive_poll_plus_the_two_printed_lines_passes_its_own_tests(tmp_path):
    project = tmp_path / "project"
    copy_project(project)
    before = fingerprint(project)

    printed = run(project, "manage.py", "startlive", "poll").stdout
    after = fingerprint(project)
    # Nothing outside the new folders changed.
    assert {path: digest for path, digest in after.items() if path in before} == before
    assert {path for path in after if path not in before} == {path.format(name="poll") for path in GENERATED}

    app_line, url_line = '"poll",', 'path("", include("poll.urls")),'
    assert {app_line, url_line} <= {line.strip() for line in printed.splitlines()}, printed
    insert_after(project / "project" / "settings.py", '"ticker",', app_line)
    insert_after(project / "project" / "urls.py", 'path("", include("ticker.urls")),', url_line)

    run(project, "manage.py", "check", "--fail-level", "WARNING")
    run(project, "manage.py", "makemigrations", "--check", "--dry-run")
    run(project, "manage.py", "migrate", "--noinput")
    run(project, "-m", "ruff", "check", "poll", "tests/poll")
    run(project, "-m", "ruff", "format", "--check", "poll", "tests/poll")
    # The layout test finds the new app by itself (and, below, checks its imports); the CSP test
    # finds its page.
    found = run(project, "-c", "from tests.realtime.test_layout import APPS; print(' '.join(APPS))")
    assert "poll" in found.stdout.split(), found.stdout

    # On the suite's database: PostgreSQL when the suite runs there, in a test database of its own.
    database = {}
    if os.environ.get("DATABASE_URL"):
        database = {
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "DJANGO_TEST_DATABASE_NAME": f"test_poll_{os.getpid()}",
        }
    tests = run(
        project,
        *("-m", "pytest", "tests/poll", "tests/realtime/test_layout.py", "tests/realtime/test_csp.py"),
        *("-v", "-p", "no:cacheprovider"),
        env=database,
    )
    assert " passed" in tests.stdout and " failed" not in tests.stdout, tests.stdout[-3000:]
    assert "[/poll/] PASSED" in tests.stdout, tests.stdout[-3000:]
