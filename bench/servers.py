"""The servers under test: how each is prepared, started, measured and stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TUTORIAL = BENCH / "tutorial"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKLOG = 4096
# The Redis database the multi-process kinds share (flushed before each run).
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daphne_command(app: str, port: int) -> list[str]:
    """Return the Daphne command line: quiet, large backlog, patient with slow accepts."""
    # Daphne has no --backlog; a Twisted endpoint string sets it (Twisted's default is 50).
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog={BACKLOG}"
    return [PYTHON, "-m", "daphne", "-e", endpoint, "-v", "0", "--websocket_connect_timeout", "60", app]


# make serve's HTTP protocol: httptools with a header timeout (realtime/serverguard.py).
SERVE_HTTP = "realtime.serverguard:HttpToolsProtocol"


def uvicorn_command(app: str, port: int, ws: str, deflate: bool = False, http: str = SERVE_HTTP) -> list[str]:
    """Return the uvicorn command line of ``make serve`` with the WebSocket implementation ``ws``."""
    return [
        PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", http, "--ws", ws,
        "--ws-per-message-deflate", "true" if deflate else "false",
        "--backlog", str(BACKLOG), "--lifespan", "off", "--no-access-log", "--log-level", "warning",
        "--ws-max-size", "1048576", "--timeout-graceful-shutdown", "10",
    ]  # fmt: skip


@dataclass(frozen=True)
class Kind:
    """One server under test."""

    name: str
    description: str
    django: str | None  # settings module, or None (no database, no sessions)
    login_form: bool  # has the project's /accounts/login/ form
    baseline: bool = False  # a baseline's larger runs are skipped once it collapses
    deflate: bool = False  # the server accepts permessage-deflate and the clients offer it (browsers do)
    processes: int = 0  # >0: that many processes sharing Redis and PostgreSQL (bench/cluster.py)
    bus: str = "redis"  # with processes: "redis" (REDIS_URL), or "postgres" (REALTIME_BUS=postgres, no Redis)
    ws: str = "websockets-sansio"  # uvicorn's --ws for the project's uvicorn kinds
    metrics: bool = True  # False: REALTIME_METRICS=0, the project records no metrics
    settings: tuple[tuple[str, str], ...] = ()  # more environment: (name, value) pairs

    def command(self, port: int) -> list[str]:
        """Return the command line that serves on ``port``."""
        if self.name == "bare":
            return [PYTHON, str(BENCH / "bare_websockets.py"), "--port", str(port)]
        if self.name == "uvicorn-asgi":
            # httptools itself: realtime.serverguard's header timeout would import the project.
            command = uvicorn_command("bare_asgi:application", port, self.ws, http="httptools")
            return command + ["--app-dir", str(BENCH)]
        if self.name == "tutorial":
            return daphne_command("tutorial_asgi:application", port)
        if self.name == "realtime-daphne":
            return daphne_command("project.asgi:application", port)
        return uvicorn_command("project.asgi:application", port, self.ws, self.deflate)

    def env(self, database: Path | str | None) -> dict[str, str]:
        """Return the environment of the server and of its setup commands.

        ``database`` is a SQLite file, or a PostgreSQL URL for the shared kinds.
        """
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_LOG_LEVEL": "WARNING",
            # The limits guard real users; here they would only hide the fan-out cost.
            "REALTIME_RATE_LIMIT": "1000000/1s",
            "REALTIME_MAX_CONNECTIONS_PER_USER": "1000000",
        }
        for name in ("REDIS_URL", "DATABASE_URL"):
            env.pop(name, None)  # the default, embedded mode, unless the kind shares services
        if self.processes and self.bus == "redis":
            env["REDIS_URL"] = BENCH_REDIS_URL
        elif self.processes:
            env["REALTIME_BUS"] = self.bus
        if not self.metrics:
            env["REALTIME_METRICS"] = "0"
        env.update(self.settings)
        if self.django:
            env["DJANGO_SETTINGS_MODULE"] = self.django
        if isinstance(database, str):
            env["DATABASE_URL"] = database
        elif database:
            env["SQLITE_PATH"] = str(database)
        if self.name == "tutorial":
            env["PYTHONPATH"] = os.pathsep.join([str(TUTORIAL), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def cwd(self) -> Path:
        """Return the directory the server and its commands run in."""
        return TUTORIAL if self.name == "tutorial" else ROOT


KINDS = {
    kind.name: kind
    for kind in [
        Kind("bare", "bare `websockets` 17 broadcast server (uvloop), the ceiling", None, False),
        Kind(
            "uvicorn-asgi",
            "a trivial ASGI broadcast app (bench/bare_asgi.py) under uvicorn with `make serve`'s flags: "
            "the floor of the server the project runs on",
            None,
            False,
        ),
        Kind(
            "tutorial",
            "Channels tutorial chat, AuthMiddlewareStack, in-memory layer, Daphne",
            "tutorial_settings",
            False,
            True,
        ),
        Kind("realtime-daphne", "this project under Daphne", "project.settings", True),
        Kind(
            "realtime-uvicorn",
            "this project under uvicorn with `make serve`'s flags (--ws websockets-sansio, no deflate)",
            "project.settings",
            True,
        ),
        Kind(
            "realtime-uvicorn-nometrics",
            "`realtime-uvicorn` with REALTIME_METRICS=0: no metric recorded (the cost of metrics)",
            "project.settings",
            True,
            metrics=False,
        ),
        Kind(
            "realtime-uvicorn-nolag",
            "`realtime-uvicorn` with REALTIME_MAX_DELIVERY_LAG=0: readers shed by queue length only",
            "project.settings",
            True,
            settings=(("REALTIME_MAX_DELIVERY_LAG", "0"),),
        ),
        Kind(
            "realtime-uvicorn-websockets",
            "this project under uvicorn --ws websockets",
            "project.settings",
            True,
            ws="websockets",
        ),
        Kind(
            "realtime-uvicorn-deflate",
            "this project under uvicorn with permessage-deflate on (its default), offered by the clients",
            "project.settings",
            True,
            deflate=True,
        ),
        *(
            Kind(
                f"redis-{n}proc",
                f"this project, {n} uvicorn process{'es' if n > 1 else ''} (`make serve`'s flags) "
                "sharing Redis (channel layer, cache) and PostgreSQL; clients spread over them",
                "project.settings",
                True,
                processes=n,
            )
            for n in (1, 2, 4)
        ),
        *(
            Kind(
                f"pg-{n}proc",
                f"this project, {n} uvicorn processes (`make serve`'s flags) on PostgreSQL alone "
                "(REALTIME_BUS=postgres, no Redis); clients spread over them",
                "project.settings",
                True,
                processes=n,
                bus="postgres",
            )
            for n in (2, 4)
        ),
    ]
}


def run_django(kind: Kind, database: Path | str | None, *args: str, timeout: float = 600) -> str:
    """Run ``python -m django <args>`` (or a script) for ``kind``; return its stdout."""
    command = [PYTHON, *args] if args[0].endswith(".py") else [PYTHON, "-m", "django", *args]
    done = subprocess.run(
        command, cwd=kind.cwd(), env=kind.env(database), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed for {kind.name}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare_database(kind: Kind, workdir: Path, users: int) -> tuple[Path, list[dict]]:
    """Migrate a template database for ``kind`` and create ``users`` sessions; return both."""
    import json

    db = workdir / f"{kind.django}.template.sqlite3"
    db.unlink(missing_ok=True)
    run_django(kind, db, "migrate", "--noinput", "-v0")
    out = workdir / f"{kind.django}.sessions.json"
    run_django(kind, db, str(BENCH / "sessions.py"), "--count", str(users), "--out", str(out))
    checkpoint(db)
    return db, json.loads(out.read_text())


def checkpoint(db: Path) -> None:
    """Fold the WAL into the database file so that copying the file copies everything."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def copy_database(template: Path, target: Path) -> Path:
    """Give one run its own fresh copy of the template database."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, target)
    return target


# -- process metrics from /proc ------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):  # the task ended meanwhile
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of ``pid`` and its live descendants (and reaped children)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def memory_kb(pid: int, key: str) -> int:
    """Return a /proc/<pid>/status value in kB (``VmRSS``, ``VmHWM``) summed over the tree."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def machine_busy_seconds() -> float:
    """Return the user+system CPU seconds of every process on the machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user, nice, system: not irq/softirq, which loopback TCP of our own traffic lands in.
    return sum(fields[:3]) / CLK_TCK


# -- a running server ------------------------------------------------------------


@dataclass
class Server:
    """One server process serving ``kind`` on ``port``."""

    kind: Kind
    database: Path | str | None  # SQLite file or PostgreSQL URL
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until ``/healthz`` answers 200."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.kind.command(self.port),
                cwd=self.kind.cwd(),
                env=self.kind.env(self.database),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited early; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.kind.name} did not answer /healthz within {timeout} s; see {self.log_path}"
        )

    def cpu(self) -> float:
        """Return the CPU seconds the server has used so far."""
        return cpu_seconds(self.process.pid)

    def rss_kb(self) -> int:
        """Return the server's resident memory now, in kB."""
        return memory_kb(self.process.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        """Return the server's peak resident memory (high-water mark), in kB."""
        return memory_kb(self.process.pid, "VmHWM")

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 10 s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def stored_messages(sqlite_path: Path) -> int | None:
    """Return how many chat messages the project stored in ``sqlite_path`` (None: no such table)."""
    try:
        with sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM realtime_message").fetchone()[0]
    except sqlite3.Error:
        return None
