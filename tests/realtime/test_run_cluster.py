"""`make run-cluster` is the production way with two processes: `make serve`'s guards, twice.

It refuses to start without a secret key (before it touches the database),
and then serves with DEBUG off, static files collected, and no demo users.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests import pg_cluster
from tests.conftest import ROOT, flushed_redis, free_port, live_database_url
from tests.serve import clean_env, long_secret_key

pytestmark = pytest.mark.slow

# A Redis database of its own (see the other tests' choices).
CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/3"


def database_env(tmp_path: Path) -> dict[str, str]:
    """Return the environment naming a fresh database: PostgreSQL when the suite runs on it, else SQLite."""
    url = live_database_url()
    return {"DATABASE_URL": url} if url else {"SQLITE_PATH": str(tmp_path / "cluster.sqlite3")}


def two_free_ports() -> int:
    """Return a port free on 127.0.0.1 whose successor is free too (run-cluster takes PORT and PORT+1)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_without_a_secret_key_it_refuses_before_touching_the_database(tmp_path):
    sqlite = tmp_path / "cluster.sqlite3"
    result = subprocess.run(
        ["make", "--no-print-directory", "run-cluster"],
        cwd=ROOT,
        env=clean_env(REDIS_URL=CLUSTER_REDIS_URL, SQLITE_PATH=str(sqlite), PORT=str(two_free_ports())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "make run-cluster: set DJANGO_SECRET_KEY" in result.stderr
    assert "make run" in result.stderr.split("DJANGO_SECRET_KEY", 1)[1]  # the development way is named
    assert not sqlite.exists()  # no migration, no demo user


def test_without_a_shared_bus_it_refuses_and_names_both(tmp_path):
    sqlite = tmp_path / "cluster.sqlite3"
    result = subprocess.run(
        ["make", "--no-print-directory", "run-cluster"],
        cwd=ROOT,
        env=clean_env(
            DJANGO_SECRET_KEY=long_secret_key(), SQLITE_PATH=str(sqlite), PORT=str(two_free_ports())
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "set REDIS_URL" in result.stderr and "REALTIME_BUS=postgres" in result.stderr
    assert not sqlite.exists()


@contextmanager
def run_cluster(tmp_path: Path, **bus: str) -> Iterator[list[str]]:
    """Run `make run-cluster` with a key on a fresh database and ``bus`` (default: Redis); yield the URLs."""
    port = two_free_ports()
    env = clean_env(
        DJANGO_SECRET_KEY=long_secret_key(),
        PORT=str(port),
        **(database_env(tmp_path) | (bus or {"REDIS_URL": CLUSTER_REDIS_URL})),
    )
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    log_path = tmp_path / "run-cluster.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run-cluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make, its shell and both uvicorns, stopped together
        )
    try:
        for url in urls:
            wait_for_health(url, process, log_path)
        yield urls
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_health(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Wait until ``url``/healthz answers, failing with the log if make stops or it never does."""
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"make run-cluster exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer /healthz:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.2)


def test_with_a_key_both_processes_serve_in_production_mode(tmp_path):
    for _ in flushed_redis(CLUSTER_REDIS_URL):
        with run_cluster(tmp_path) as urls:
            for url in urls:
                with httpx.Client(base_url=url, timeout=10) as client:
                    page = client.get("/accounts/login/")
                    assert page.status_code == 200  # the static manifest exists: collected
                    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', page.text).group(1)
                    assert client.get(stylesheet).status_code == 200
                    assert client.get("/admin/login/").status_code == 200
                    missing = client.get("/no-such-page/")
                    assert missing.status_code == 404 and "DEBUG = True" not in missing.text
                    login = client.post(
                        "/accounts/login/",
                        data={
                            "username": "admin",
                            "password": "admin",
                            "csrfmiddlewaretoken": client.cookies["csrftoken"],
                        },
                    )
                    assert login.status_code == 200 and "sessionid" not in client.cookies  # no demo user


def test_on_postgresql_alone_both_processes_serve(tmp_path):
    database_url = pg_cluster.create_database()
    try:
        with run_cluster(tmp_path, REALTIME_BUS="postgres", DATABASE_URL=database_url) as urls:
            for url in urls:
                with httpx.Client(base_url=url, timeout=10) as client:
                    assert client.get("/healthz").status_code == 200
                    assert client.get("/accounts/login/").status_code == 200
    finally:
        pg_cluster.drop_database(database_url)
