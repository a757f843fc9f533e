"""`make serve` in a test: uvicorn with the Makefile's flags, on a database of the test's own."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ROOT, LiveServer, make_live_server

# Settings these tests choose: never inherited from the calling environment.
_SETTINGS = ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DATABASE_URL", "REDIS_URL", "REALTIME_BUS")
# Never inherited either; under `make test`, variables given on make's
# command line travel in MAKEFLAGS and would override ours in a nested make.
_OUTSIDE = (
    "DJANGO_BEHIND_TLS_PROXY",
    "DJANGO_HSTS_SECONDS",
    "FORWARDED_ALLOW_IPS",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
)


def clean_env(base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """Return ``base`` with none of the variables above, plus ``overrides``.

    ``base`` defaults to this process's environment; a live server's
    environment keeps its database settings.
    """
    drop = _OUTSIDE if base is not None else _SETTINGS + _OUTSIDE
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in drop}
    return {**env, "DJANGO_SETTINGS_MODULE": "project.settings", **overrides}


def served_venv() -> Path:
    """Return the virtual environment `make serve` runs: VENV's (as make test-latest sets it), or .venv."""
    return (ROOT / os.environ.get("VENV", ".venv")).resolve()


def long_secret_key() -> str:
    """Return a secret key good enough for check --deploy."""
    return secrets.token_urlsafe(50)


@contextmanager
def served(tmp_path: Path, server: LiveServer | None = None, **env: str) -> Iterator[tuple[LiveServer, Path]]:
    """Run `make serve` (DEBUG off, uvicorn with the Makefile's flags) on a fresh database.

    The database is prepared as for the live tests (tests/conftest.py: its own
    SQLite file, or PostgreSQL database, demo users alice and bob), unless
    ``server`` is one prepared so already. Yields the server (for its URL and
    manage.py) and the path of its combined output.
    """
    # Otherwise the test would serve another Django than the suite's (.venv's, under .venv-latest).
    if served_venv() != Path(sys.prefix).resolve():
        raise RuntimeError(
            f"make serve would run {served_venv()}, not this suite's {sys.prefix}: "
            "run the suite through make (test, test-latest), or set VENV and REQUIREMENTS as they do."
        )
    server = server or make_live_server(tmp_path)
    log_path = tmp_path / "serve.log"
    serve_env = clean_env(
        server.env,
        PORT=str(server.port),
        HOST="127.0.0.1",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=long_secret_key(),
        **env,
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "serve"],
            cwd=ROOT,
            env=serve_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and the uvicorn it execs, stopped together
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"make serve exited early:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                log = log_path.read_text(errors="replace")
                raise RuntimeError(f"make serve did not answer /healthz:\n{log}")
            time.sleep(0.2)
        yield server, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def logged_line(log_path: Path, *parts: str, timeout: float = 5) -> str:
    """Return the first line of the log that holds every one of ``parts``, waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        for line in log_path.read_text(errors="replace").splitlines():
            if all(part in line for part in parts):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line with {parts} in:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)


@contextmanager
def uvicorn_with_guard(tmp_path, **env: str) -> Iterator[LiveServer]:
    """Run uvicorn as `make serve` would, with the header-timeout protocol (realtime.serverguard)."""
    server = make_live_server(tmp_path, **env)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "project.asgi:application",
            "--port",
            str(server.port),
            "--loop",
            "uvloop",
            "--http",
            "realtime.serverguard:HttpToolsProtocol",
            "--lifespan",
            "off",
            "--ws",
            "websockets-sansio",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "uvicorn exited early"
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not answer /healthz"
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)
