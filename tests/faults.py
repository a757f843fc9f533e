"""Services the fault tests can break: a private Redis, and a TCP proxy that can be cut."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from pathlib import Path

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
