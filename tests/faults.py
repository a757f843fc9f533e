"""Services the fault tests can break: a private Redis, a private PostgreSQL, a TCP proxy to cut."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis

from tests.conftest import free_port


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that can be stopped and restarted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for the Redis fault tests (Debian package redis-server)"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis(port=self.port).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        """Stop it (its data is gone, as after a crash of a cache-only Redis)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a scratch directory), to restart for real."""

    def __init__(self) -> None:
        self.port = free_port()
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
        assert found, "PostgreSQL's server binaries are needed (Debian package postgresql)"
        self.bin = Path(found[-1]).parent
        # PostgreSQL refuses to run as root: as root, it runs as the postgres user, in a
        # directory that user owns (pytest's own tmp directories are root's alone).
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.directory = Path(tempfile.mkdtemp(prefix="realtime-pg-"))
        if self.as_user:
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        """Return the URL of ``database`` on this server."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log")]
            + list(args),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        """Create the cluster and start the server; return once it accepts connections."""
        subprocess.run(
            [*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
            + ["--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._ctl("-o", options, "-w", "start")

    def restart(self) -> None:
        """Restart it as an operator would (fast: each session told, then ended); return once it is up."""
        self._ctl("-m", "fast", "-w", "restart")

    def create_database(self, name: str) -> None:
        """Create database ``name``."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        """Stop it at once and remove its files."""
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


class CuttableProxy:
    """A TCP proxy to ``target_port``, on its own thread, whose connections can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cuttable-proxy", daemon=True)

    def start(self) -> None:
        """Listen on 127.0.0.1:<port> (blocking callers may use it at once)."""
        self.thread.start()
        server = asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.server = asyncio.run_coroutine_threadsafe(server, self.loop).result(5)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one connection both ways; refuse it while cut."""
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy bytes until either side ends."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            self.writers.discard(writer)

    def set_cut(self, cut: bool, *, drop: bool = True) -> None:
        """Cut (refuse new connections and, with ``drop``, drop every open one) or restore."""

        def apply() -> None:
            self.cut = cut
            if cut and drop:
                for writer in list(self.writers):
                    writer.transport.abort()

        self.loop.call_soon_threadsafe(apply)
        time.sleep(0.1)

    def stop(self) -> None:
        """Drop everything and stop the thread."""
        self.set_cut(True)
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
