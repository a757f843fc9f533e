"""Server processes on PostgreSQL alone (REALTIME_BUS=postgres, no REDIS_URL), for the cluster tests.

Each cluster gets a scratch database of its own, dropped when it stops:
whatever database the suite runs on, these servers share PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import LiveServer, free_port, make_live_server

# The server of TEST_DATABASE_URL (make test's), else of a PostgreSQL DATABASE_URL, else the local one.
SERVER_URL = next(
    (
        url.rpartition("/")[0]
        for url in (os.environ.get("TEST_DATABASE_URL", ""), os.environ.get("DATABASE_URL", ""))
        if url.startswith(("postgres://", "postgresql://"))
    ),
    "postgresql://postgres@127.0.0.1:5432",
)
# uvicorn as `make serve` runs it (Makefile UVICORN_FLAGS), minus its log config.
UVICORN_FLAGS = [
    *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio"),
    *("--ws-per-message-deflate", "false", "--lifespan", "off", "--no-access-log"),
    *("--timeout-graceful-shutdown", "10"),
]


@dataclass
class UvicornServer(LiveServer):
    """A LiveServer served by uvicorn, with the application ``app`` (module:attribute)."""

    app: str = "project.asgi:application"

    def command(self) -> list[str]:
        """Return uvicorn's command line, on this server's port."""
        where = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [sys.executable, "-m", "uvicorn", *where, *UVICORN_FLAGS]

    def arguments(self) -> list[str]:
        """Return uvicorn's command line and the application it serves."""
        return [*self.command(), self.app]


def create_database() -> str:
    """Create an empty scratch database; return its URL."""
    name = f"realtime_pgbus_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {SERVER_URL} is needed for these tests and is not reachable: {exc}")
    return f"{SERVER_URL}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`."""
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')


def prepare(tmp_path: Path, count: int = 2, *, app: str = "project.asgi:application", **env: str):
    """Prepare (migrate, demo users) ``count`` uvicorn servers sharing a new database, on the postgres bus."""
    database_url = create_database()
    first = make_live_server(
        tmp_path, DATABASE_URL=database_url, REALTIME_BUS="postgres", REDIS_URL="", **env
    )
    servers = []
    for n in range(count):
        port = free_port()
        servers.append(
            UvicornServer(
                url=f"http://127.0.0.1:{port}",
                port=port,
                env=first.env,
                log_path=tmp_path / f"uvicorn-{n}.log",
                app=app,
            )
        )
    return servers


async def start_all(servers) -> None:
    """Start the servers at the same moment."""
    await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))


def stop_all(servers) -> None:
    """Stop the servers (a paused one is woken first) and drop their database."""
    for server in servers:
        if server.process is not None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGCONT)
        server.stop()
    drop_database(servers[0].env["DATABASE_URL"])
