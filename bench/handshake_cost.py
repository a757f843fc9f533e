"""CPU per authenticated handshake and Python memory per idle socket, in-process.

Without ``bench/run.py``'s server and load client: only this process's own CPU time
(``time.process_time``, the realtime DB thread included) over N handshakes
through ``project.asgi.application`` with Channels' ``WebsocketCommunicator``,
each with its own user and logged-in session (bench/sessions.py), to one
chat room. uvicorn's own cost is not in it. On a loaded machine its CPU
figure swings as much as the end-to-end one (bench/README.md); the traced
bytes per idle socket, from a second pass under ``tracemalloc``, hardly
move. Run::

    .venv/bin/python bench/handshake_cost.py --count 1000 [--profile out.prof]

It uses a scratch SQLite database in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(directory: str) -> None:
    """Point Django at a scratch database with production-like settings, and migrate it."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_LOG_LEVEL="WARNING",
        REALTIME_MAX_CONNECTIONS_PER_USER="1000000",
        SQLITE_PATH=str(Path(directory) / "db.sqlite3"),
    )
    for name in ("REDIS_URL", "REALTIME_BUS", "DATABASE_URL"):
        os.environ.pop(name, None)
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


async def connect(application, sessions: list[dict], room: str) -> list:
    """Open one socket per session to ``room``; return the communicators, each past hello and presence."""
    from channels.testing import WebsocketCommunicator

    sockets = []
    for entry in sessions:
        communicator = WebsocketCommunicator(
            application,
            f"/ws/rooms/{room}/",
            headers=[
                (b"host", b"127.0.0.1"),
                (b"origin", b"http://127.0.0.1"),
                (b"cookie", f"sessionid={entry['session']}".encode()),
            ],
        )
        connected, _ = await communicator.connect(timeout=30)
        if not connected:
            raise SystemExit("a handshake was refused")
        while True:  # hello, then presence
            message = await communicator.receive_json_from(timeout=30)
            if message["type"] == "presence":
                break
        sockets.append(communicator)
    return sockets


async def close(sockets: list) -> None:
    """Close every socket and let their drivers end."""
    for communicator in sockets:
        await communicator.disconnect()


async def measure(count: int, profile: str | None, top: int) -> None:
    """Print CPU per handshake, then traced bytes per idle socket."""
    from sessions import create_sessions

    from project.asgi import application

    sessions = await asyncio.to_thread(create_sessions, count * 2 + 40)
    warm, timed, traced = sessions[:20], sessions[20 : 20 + count], sessions[20 + count : 20 + 2 * count]
    await close(await connect(application, warm, "warmup"))
    gc.collect()
    profiler = cProfile.Profile() if profile else None
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    sockets = await connect(application, timed, "bench")
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    per = f"CPU per handshake {cpu / count * 1e6:.0f} us; wall {wall / count * 1e6:.0f} us"
    print(f"handshakes: {count}; {per}")
    await close(sockets)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start = tracemalloc.take_snapshot() if top else None
    sockets = await connect(application, traced, "bench2")
    await asyncio.sleep(1.5)  # the last presence diffs go out (at most one a second) ...
    for communicator in sockets:  # ... and are dropped unread: what a client holds is not counted
        while not communicator.output_queue.empty():
            communicator.output_queue.get_nowait()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    if top:
        for stat in tracemalloc.take_snapshot().compare_to(start, "lineno")[:top]:
            print(f"{stat.size_diff / count:8,.0f} B/socket  {stat.traceback}")
    tracemalloc.stop()
    print(f"idle sockets: {count}; traced bytes per socket {(after - before) / count:,.0f}")
    await close(sockets)


def main() -> None:
    """Parse the options, set up a scratch database and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--profile", help="write a cProfile of the timed handshakes here")
    parser.add_argument("--top", type=int, default=0, help="print the N largest allocation sites per socket")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        setup(directory)
        asyncio.run(measure(options.count, options.profile, options.top))


if __name__ == "__main__":
    main()
