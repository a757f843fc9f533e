"""Shared fixtures: the real ASGI app in-process, and a real Daphne on a free port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from channels.layers import get_channel_layer

from realtime import stores
from realtime.process import process

# Fixtures of the live and browser helpers, for every app's tests (they import no app).
from tests.browser import browser, logged_in_page  # noqa: F401
from tests.live_client import alice, alice_bearer, alice_token, anonymous, bob, logins  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
async def _fresh_realtime_state():
    """Flush the channel layer and reset the process state after each test (as Channels' suite does)."""
    yield
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    process.reset()


@pytest.fixture(scope="session", autouse=True)
def _serving():
    """The test process serves the ASGI app in-process: its publishes stay in memory, as a server's do.

    Set once for the session, not by whichever test first calls the app, so no
    test depends on the order it runs in; tests of a process that does not
    serve set ``realtime.bus.serving`` to False themselves.
    """
    from realtime import bus

    bus.mark_serving()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Start each test with an empty cache (rate-limit windows, presence snapshots)."""
    from django.core.cache import cache

    cache.clear()
    yield


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A real Daphne serving project.asgi:application from its own SQLite file."""

    url: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a manage.py command against this server's database and settings."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def create_user(self, username: str, password: str | None = None) -> None:
        """Create a user (password defaults to the username) unless it exists."""
        password = password or username
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model as g; U=g(); "
            f"U.objects.filter(username={username!r}).exists() or "
            f"U.objects.create_user({username!r}, password={password!r})",
        )

    def create_token(self, username: str) -> str:
        """Issue an API token for ``username`` with manage.py create_token."""
        return self.manage("create_token", username).stdout.strip()

    def command(self) -> list[str]:
        """Return the command that serves the app (Daphne; a subclass may run another server)."""
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.extra_args]

    def arguments(self) -> list[str]:
        """Return the whole command line: the server's command and the application it serves."""
        return [*self.command(), "project.asgi:application"]

    def start(self) -> None:
        """Start the server and wait until /healthz answers."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            self.arguments(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        name = self.command()[2]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer /healthz within 30 s; see {self.log_path}")

    def stop(self) -> None:
        """Stop Daphne (SIGTERM, then SIGKILL)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# PostgreSQL databases made for live servers, dropped when the session ends.
_live_databases: list[str] = []


def live_database_url() -> str | None:
    """Return a fresh PostgreSQL database URL when the suite runs on PostgreSQL, else None.

    Each live server gets a database of its own (the test database belongs to
    pytest-django), as each gets its own SQLite file otherwise.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    base, _, _ = url.rpartition("/")
    name = f"realtime_live_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    _live_databases.append(f"{base}|{name}")
    return f"{base}/{name}"


@pytest.fixture(scope="session", autouse=True)
def _drop_live_databases():
    """Drop the PostgreSQL databases made for live servers."""
    yield
    for entry in _live_databases:
        base, name = entry.split("|")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite, test against a database file in WAL mode, as the app runs, not Django's in-memory default.

    The in-memory test database shares one cache between connections, with
    table locks that fail at once ("database table is locked") where a WAL
    file lets readers and a writer proceed: the realtime DB thread checking
    a session while a view saves it would fail only in tests.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and not database.get("TEST", {}).get("NAME"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _release_connections_before_the_test_database_goes(django_db_setup, django_db_blocker):
    """Close the connections other threads opened, so pytest-django can drop the test database.

    On PostgreSQL a connection is open as long as its thread's connection
    object: the main thread's, asgiref's sync thread's (async tests' ORM
    calls) and the realtime DB thread's. Dropping a database someone is
    connected to fails.
    """
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    from realtime.db import db_call

    async def close_everywhere() -> None:
        await sync_to_async(connections.close_all)()  # asgiref's one sync thread
        await db_call(connections.close_all)()  # the realtime DB thread

    with django_db_blocker.unblock():  # the DB thread checks its connection before each call
        asyncio.run(close_everywhere())
    connections.close_all()


def make_live_server(tmp_path: Path, **env_overrides: str) -> LiveServer:
    """Prepare (migrate, demo users) but do not start a live server in ``tmp_path``."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SQLITE_PATH": str(tmp_path / "live.sqlite3"),
        "DJANGO_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
        # The shared servers see a new room per test, all created by the same few users (the
        # chat's allowance; without the chat nothing reads it).
        "CHAT_ROOMS_PER_USER_PER_HOUR": "100000",
        **env_overrides,
    }
    if "DATABASE_URL" not in env_overrides and (database_url := live_database_url()):
        env["DATABASE_URL"] = database_url
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, env=env, log_path=tmp_path / "daphne.log")
    server.manage("migrate", "-v0")
    server.manage("seed_demo")
    return server


@contextmanager
def running_server(tmp_path: Path, **env_overrides: str) -> Iterator[LiveServer]:
    """Run a live server of the test's own (with other environment) for the ``with`` block."""
    server = make_live_server(tmp_path, **env_overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _live_server_helper():
    """Replace pytest-django's hook for its own ``live_server``: ours is a real
    Daphne in its own process with its own database, so there is nothing to patch."""
    yield


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> LiveServer:
    """One real Daphne for the session's live and browser tests (users alice, bob, admin)."""
    server = make_live_server(tmp_path_factory.mktemp("live"))
    server.start()
    yield server
    server.stop()


def flushed_redis(url: str) -> Iterator[redis.Redis]:
    """Yield a client of an emptied Redis database, emptied again after; fail loudly without Redis."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {url} is needed and is not reachable: {exc}")
    yield client
    client.flushdb()


# The scratch Redis database of the limit tests that run in this process (tests/*/test_limits.py).
LIMITS_REDIS_URL = "redis://127.0.0.1:6379/6"


@pytest.fixture
def limits_redis():
    """An empty Redis database for the limit tests; fails loudly when Redis is not there."""
    yield from flushed_redis(LIMITS_REDIS_URL)


@pytest.fixture
async def shared(settings, limits_redis):
    """This process configured as with REDIS_URL: limits, presence and the cache in Redis."""
    settings.REDIS_URL = LIMITS_REDIS_URL
    settings.REALTIME_BUS = "redis"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": LIMITS_REDIS_URL}
    }
    yield limits_redis
    await stores.close()
    process.reset()


@pytest.fixture
def alice_client(django_user_model):
    """Return Django's test client, logged in as a new user alice."""
    from django.test import Client

    client = Client()
    client.force_login(django_user_model.objects.create_user("alice", password="alice"))
    return client
