"""Publish-to-delivery latency of the buses through the database (realtime/bus.py, realtime/pgbus.py).

    .venv/bin/python bench/bus_latency.py [--samples 200] [--interval 0.05]

Three measurements, each on servers of its own (uvicorn, `make serve`'s
protocol flags), one WebSocket client, one event at a time:

* ``default-shell``: the default setup (SQLite, no Redis, one server); a
  separate Django process, not serving, publishes (as ``manage.py shell``
  or a cron job does): through the event table, read by polling.
* ``pg-2proc-post``: ``REALTIME_BUS=postgres``, two processes, no Redis; a
  message posted over HTTP on process A reaches a socket on process B.
* ``pg-2proc-shell``: the same cluster; a separate Django process publishes.

Each event carries the time it was published (``time.time()``, one
machine); the client subtracts it from the time it read the event. Prints
p50/p90/p99/max in milliseconds. Needs PostgreSQL at BENCH_DATABASE_URL's
server (default postgres://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import websockets

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test").rsplit("/", 1)[0]
PUBLISHER = """
import sys, time
from chat.events import announcement
from chat.topic import RoomTopic
from realtime import publish_sync
room, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for _ in range(count):
    publish_sync(RoomTopic(room), announcement(repr(time.time())))
    time.sleep(interval)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REALTIME_BUS")}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "1",
        "DJANGO_LOG_LEVEL": "WARNING",
        "SQLITE_PATH": str(workdir / "bench.sqlite3"),
        "REALTIME_RATE_LIMIT": "1000000/1s",
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)


def serve(env: dict[str, str], workdir: Path, name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "off"]
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen([*command, "--no-access-log"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start; see {workdir / name}.log")


async def login(url: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=10)
    await client.get("/accounts/login/")
    data = {"username": "alice", "password": "alice", "csrfmiddlewaretoken": client.cookies["csrftoken"]}
    response = await client.post("/accounts/login/", data=data)
    assert response.status_code == 302, response.status_code
    return client


async def measure(url: str, cookies: httpx.Cookies, room: str, kind: str, count: int, send) -> list[float]:
    """Open a socket on ``url``; run ``send()``; return the latency of ``count`` events of ``kind``."""
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with websockets.connect(
        f"{url.replace('http', 'ws', 1)}/ws/rooms/{room}/",
        additional_headers={"Cookie": cookie, "Origin": url},
    ) as ws:
        while json.loads(await ws.recv())["type"] != "presence":
            pass
        sender = asyncio.create_task(send())
        latencies = []
        while len(latencies) < count:
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if event["type"] == kind:
                latencies.append((time.time() - float(event["text"])) * 1000)
        await sender
    return latencies


def publisher(env: dict[str, str], room: str, count: int, interval: float):
    async def send() -> None:
        code = PUBLISHER.replace(
            "sys.argv[1], int(sys.argv[2]), float(sys.argv[3])", f"{room!r}, {count}, {interval}"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "-c", code, cwd=ROOT, env=env, stdout=subprocess.DEVNULL
        )
        await process.wait()

    return send


def poster(client: httpx.AsyncClient, room: str, count: int, interval: float):
    async def send() -> None:
        for _ in range(count):
            headers = {"X-CSRFToken": client.cookies["csrftoken"]}
            await client.post(
                f"/api/rooms/{room}/messages", json={"text": repr(time.time())}, headers=headers
            )
            await asyncio.sleep(interval)

    return send


def report(name: str, latencies: list[float]) -> None:
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    print(
        f"| {name} | {len(latencies)} | {q[49]:.1f} | {q[89]:.1f} | {q[98]:.1f} | {latencies[-1]:.1f} |",
        flush=True,
    )


async def main(samples: int, interval: float) -> None:
    print("| setup | events | p50 ms | p90 ms | p99 ms | max ms |\n| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = environment(workdir)
        manage(env, "migrate", "-v0")
        manage(env, "seed_demo")
        server, url = serve(env, workdir, "default")
        try:
            client = await login(url)
            room = f"bench-{uuid.uuid4().hex[:8]}"
            report(
                "default-shell",
                await measure(
                    url,
                    client.cookies,
                    room,
                    "announcement",
                    samples,
                    publisher(env, room, samples, interval),
                ),
            )
            await client.aclose()
        finally:
            server.terminate()
            server.wait()

        name = f"bench_bus_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        env = environment(workdir, DATABASE_URL=f"{POSTGRES}/{name}", REALTIME_BUS="postgres")
        servers = []
        try:
            manage(env, "migrate", "-v0")
            manage(env, "seed_demo")
            servers = [serve(env, workdir, "pg-a"), serve(env, workdir, "pg-b")]
            (_, url_a), (_, url_b) = servers
            alice_a, alice_b = await login(url_a), await login(url_b)
            room = f"bench-{uuid.uuid4().hex[:8]}"
            report(
                "pg-2proc-post",
                await measure(
                    url_b, alice_b.cookies, room, "message", samples, poster(alice_a, room, samples, interval)
                ),
            )
            room = f"bench-{uuid.uuid4().hex[:8]}"
            report(
                "pg-2proc-shell",
                await measure(
                    url_b,
                    alice_b.cookies,
                    room,
                    "announcement",
                    samples,
                    publisher(env, room, samples, interval),
                ),
            )
            await alice_a.aclose()
            await alice_b.aclose()
        finally:
            for process, _ in servers:
                process.terminate()
                process.wait()
            with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between two publishes")
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.interval))
