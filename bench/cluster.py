"""Several server processes acting as one app: Redis or PostgreSQL for events, PostgreSQL for data.

The ``redis-Nproc`` kinds of bench/run.py run N uvicorn processes with
``make serve``'s flags, all with the same ``REDIS_URL`` and ``DATABASE_URL``
(what ``make run-cluster`` does), and the load client spreads its clients,
senders included, over them: client i talks to process i mod N. So most
deliveries cross Redis from the process that stored a message to the
processes holding the receivers. The ``pg-Nproc`` kinds do the same with
``REALTIME_BUS=postgres`` and no Redis: events cross through the event table.

Each run gets a fresh PostgreSQL database copied from a migrated template
(``CREATE DATABASE ... TEMPLATE``) and a flushed Redis database.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from servers import BENCH, BENCH_REDIS_URL, Kind, Server, cpu_seconds, run_django

# A database to connect to for CREATE/DROP DATABASE (the bench's databases are made next to it).
ADMIN_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def database_url(name: str) -> str:
    """Return the URL of database ``name`` on the admin URL's server."""
    parts = urlsplit(ADMIN_DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(statement: sql.Composable) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def create_database(name: str, template: str | None = None) -> str:
    """Create database ``name`` (a copy of ``template`` if given); return its URL."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    _admin(statement)
    return database_url(name)


def drop_database(name: str) -> None:
    """Drop database ``name``, closing what still holds it."""
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def prepare_template(kind: Kind, workdir: Path, users: int) -> tuple[str, list[dict]]:
    """Migrate a template PostgreSQL database and create ``users`` sessions in it; return both."""
    name = f"bench_realtime_template_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    run_django(kind, url, "migrate", "--noinput", "-v0")
    out = workdir / "postgresql.sessions.json"
    run_django(kind, url, str(BENCH / "sessions.py"), "--count", str(users), "--out", str(out))
    return name, json.loads(out.read_text())


def stored_messages(url: str) -> int | None:
    """Return how many chat messages the project stored in the database at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM realtime_message").fetchone()[0]
    except psycopg.Error:
        return None


def flush_redis() -> None:
    """Empty the bench's Redis database, so a run starts with no groups or presence of an earlier one."""
    redis.Redis.from_url(BENCH_REDIS_URL, socket_connect_timeout=5).flushdb()


def redis_pid() -> int | None:
    """Return the Redis server's process id, if it runs on this machine."""
    try:
        info = redis.Redis.from_url(BENCH_REDIS_URL, socket_connect_timeout=5).info("server")
    except redis.RedisError:
        return None
    pid = info.get("process_id")
    return pid if pid and Path(f"/proc/{pid}").exists() else None


def postgres_pid() -> int | None:
    """Return the PostgreSQL server's main process id (its backends are its children), if on this machine."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != "postgres":
                continue
            parent = (comm.parent / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if Path(f"/proc/{parent}/comm").read_text().strip() != "postgres":
                return int(comm.parent.name)
        except OSError:
            continue
    return None


class Cluster:
    """``kind.processes`` servers of one app; measured as one (CPU and memory summed)."""

    def __init__(self, kind: Kind, database_url: str, workdir: Path, label: str) -> None:
        self.kind = kind
        self.members = [
            Server(kind, database_url, workdir / f"{label}.server-{i}.log") for i in range(kind.processes)
        ]
        self.redis = redis_pid() if kind.bus == "redis" else None
        self.postgres = postgres_pid()

    @property
    def url(self) -> str:
        return self.members[0].url

    @property
    def ports(self) -> list[int]:
        return [m.port for m in self.members]

    @property
    def process(self):
        """The first process (py-spy profiles one process)."""
        return self.members[0].process

    def start(self) -> None:
        """Start every process; stop them all if one fails to come up."""
        if self.kind.bus == "redis":
            flush_redis()
        try:
            for member in self.members:
                member.start()
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process."""
        for member in self.members:
            member.stop()

    def cpu(self) -> float:
        """Return the CPU seconds of all processes."""
        return sum(m.cpu() for m in self.members)

    def redis_cpu(self) -> float | None:
        """Return the Redis server's CPU seconds so far (None: not on this machine)."""
        return cpu_seconds(self.redis) if self.redis else None

    def database_cpu(self) -> float | None:
        """Return PostgreSQL's CPU seconds so far, every backend on this machine (None: not on it)."""
        return cpu_seconds(self.postgres) if self.postgres else None

    def rss_kb(self) -> int:
        """Return the resident memory of all processes now, in kB."""
        return sum(m.rss_kb() for m in self.members)

    def peak_rss_kb(self) -> int:
        """Return the sum of the processes' peak resident memory, in kB."""
        return sum(m.peak_rss_kb() for m in self.members)
