"""A bad production configuration fails fast, TLS-proxy settings hold, and `make test` sets itself up.

Everything here runs real processes: ``manage.py`` with the environment an
operator would set, ``make serve`` (uvicorn with the Makefile's flags) on a
free port, and the Makefile's set-up targets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, LiveServer, free_port, make_live_server
from tests.serve import clean_env, long_secret_key, served

TLS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py with a clean environment plus ``env``, on a SQLite file in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def make(*args: str, prefix: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run ``make <args>`` in the repository with a clean environment plus ``env``."""
    return subprocess.run(
        [*(prefix or []), "make", "--no-print-directory", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- DEBUG off without a secret key --------------------------------------------------------------


def test_debug_off_without_a_secret_key_stops_at_start_with_the_reason(tmp_path):
    refused = manage(tmp_path, "check", DJANGO_DEBUG="0")
    assert refused.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in refused.stderr
    assert "make serve" in refused.stderr  # the way out is named

    # The same command starts with a key, or with DEBUG on (the development key).
    assert manage(tmp_path, "check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=long_secret_key()).returncode == 0
    assert manage(tmp_path, "check", DJANGO_DEBUG="1").returncode == 0


@pytest.mark.parametrize("url", ["", "  "], ids=["empty", "blank"])
def test_an_empty_database_url_is_unset(tmp_path, url):
    """Compose files write `DATABASE_URL=`; settings failed with KeyError: 'ENGINE'."""
    script = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    result = manage(tmp_path, "shell", "-c", script, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(tmp_path / "db.sqlite3")


@pytest.mark.slow
def test_make_serve_started_three_times_at_once_in_one_checkout_serves_three_times(tmp_path):
    """Two collectstatic runs into one staticfiles/ removed each other's files: one server never started."""
    directories = [tmp_path / name for name in "abc"]
    for directory in directories:
        directory.mkdir()
    # Their databases first, so that the `make serve` start together. The collections race
    # only when they overlap closely: three of them make a failure likely, not certain.
    servers = [make_live_server(directory) for directory in directories]
    shutil.rmtree(ROOT / "staticfiles", ignore_errors=True)  # as in a fresh checkout: all to collect
    all_up = threading.Barrier(len(directories), timeout=120)

    def serve_one(directory: Path, server: LiveServer) -> int:
        try:
            with served(directory, server):
                all_up.wait()  # up together, not one after the other
                return httpx.get(f"{server.url}/accounts/login/", timeout=30).status_code
        except BaseException:
            all_up.abort()
            raise

    with ThreadPoolExecutor(len(directories)) as pool:
        answers = list(pool.map(serve_one, directories, servers))
    assert answers == [200] * len(directories)  # the login page needs the collected files' manifest


# --- check --deploy behind a TLS proxy -----------------------------------------------------------


def deploy_warnings(tmp_path: Path, **env: str) -> set[str]:
    """Return the TLS-related warning ids `manage.py check --deploy` reports with ``env``."""
    result = manage(
        tmp_path, "check", "--deploy", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=long_secret_key(), **env
    )
    assert result.returncode == 0, result.stderr
    return {warning for warning in TLS_WARNINGS if warning in result.stdout + result.stderr}


def test_behind_a_tls_proxy_check_deploy_reports_no_cookie_redirect_or_hsts_warning(tmp_path):
    assert deploy_warnings(tmp_path) == set(TLS_WARNINGS)  # what the setting is for
    assert deploy_warnings(tmp_path, DJANGO_BEHIND_TLS_PROXY="1") == set()


def test_hsts_seconds_zero_turns_hsts_off_and_only_hsts(tmp_path):
    assert deploy_warnings(tmp_path, DJANGO_BEHIND_TLS_PROXY="1", DJANGO_HSTS_SECONDS="0") == {
        "security.W004"
    }


# --- make serve: proxy headers, redirects, cookies -------------------------------------------------


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.mark.slow
async def test_make_serve_behind_a_tls_proxy_redirects_http_and_marks_cookies_secure(tmp_path):
    with served(tmp_path, DJANGO_BEHIND_TLS_PROXY="1") as (server, log_path):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            # Plain http (no X-Forwarded-Proto) goes to https, except the load balancer's probe.
            assert (await client.get("/healthz")).status_code == 200
            redirect = await client.get("/accounts/login/")
            assert redirect.status_code == 301
            assert redirect.headers["location"] == f"https://127.0.0.1:{server.port}/accounts/login/"

            # Through the proxy (X-Forwarded-Proto from 127.0.0.1): served, cookies Secure, HSTS.
            page = await client.get("/accounts/login/", headers=FORWARDED)
            assert page.status_code == 200
            csrf_cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("csrftoken="))
            assert "secure" in csrf_cookie.lower().split("; ")
            assert page.headers["strict-transport-security"] == "max-age=3600"
        # Its WebSockets: the chat's test_make_serve_behind_a_tls_proxy_takes_handshakes_through_it only.


# --- make test sets itself up ---------------------------------------------------------------------


def unprivileged() -> list[str]:
    """Return the command prefix that runs as an ordinary user (none when we are one)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux) to drop privileges")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def fake_apt_get(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Return an environment whose apt-get records its calls instead of installing, and the record."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    script = bin_dir / "apt-get"
    script.write_text(f'#!/bin/sh\necho "${{DEBIAN_FRONTEND:--}} $*" >> {calls}\n')
    script.chmod(0o755)
    # DEBIAN_FRONTEND empty, so the record shows where make sets it.
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DEBIAN_FRONTEND": ""}, calls


def test_make_test_without_root_stops_at_once_naming_the_apt_command(tmp_path):
    result = make(
        "system-deps",
        "CHROMIUM=/nonexistent/chromium",
        "NGINX=/nonexistent/nginx",
        prefix=unprivileged(),
    )
    assert result.returncode != 0
    assert "sudo apt-get update && sudo apt-get install -y chromium nginx-light\n" in result.stderr


def test_make_test_as_root_installs_the_missing_packages_with_apt(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("installing is what make does as root")
    env, calls = fake_apt_get(tmp_path)

    result = make("system-deps", "CHROMIUM=/nonexistent/chromium", f"NGINX={sys.executable}", **env)
    assert calls.read_text().splitlines() == ["- update -qq", "noninteractive install -y -qq chromium"]
    # The fake installed nothing, so make still stops, saying where it looked.
    assert result.returncode != 0
    assert "no chromium at /nonexistent/chromium" in result.stderr


def test_make_test_installs_nothing_when_the_packages_are_there(tmp_path):
    env, calls = fake_apt_get(tmp_path)
    result = make("system-deps", f"CHROMIUM={sys.executable}", f"NGINX={sys.executable}", **env)
    assert result.returncode == 0, result.stderr
    assert not calls.exists()


def test_make_test_stops_at_once_naming_how_to_start_redis(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = make("services", f"TEST_REDIS_URL={url}")
    assert result.returncode != 0
    assert f"make test: Redis is not reachable at {url}: redis.exceptions.ConnectionError" in result.stderr
    assert "redis-server --daemonize yes --bind 127.0.0.1" in result.stderr
    assert time.monotonic() - started < 30  # no waiting for a server it will not start


def test_make_test_stops_at_once_naming_how_to_start_postgresql(tmp_path):
    url = f"postgres://postgres@127.0.0.1:{free_port()}/test"
    result = make("services", f"TEST_DATABASE_URL={url}")
    assert result.returncode != 0
    assert f"make test: PostgreSQL is not reachable at {url}: psycopg.OperationalError" in result.stderr
    if Path("/etc/postgresql").is_dir():
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        assert f"sudo pg_ctlcluster --skip-systemctl-redirect {version} main start\n" in result.stderr
    else:
        assert "sudo apt-get update && sudo apt-get install -y postgresql\n" in result.stderr
