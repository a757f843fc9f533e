"""The ticker on real servers: SIGTERM on Daphne and uvicorn, and one feed for a cluster over Redis.

Section 7 of the wire contract (docs/contract.md): with REDIS_URL and several processes exactly one
feed publishes at a time, and every client of every process sees the same
seq sequence without gaps; the core's SIGTERM closes ticker sockets with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import websockets

from tests.conftest import LiveServer, free_port, make_live_server, running_server
from tests.sse_client import login, sse

pytestmark = pytest.mark.slow

INTERVAL = "0.2"
# Redis databases of their own (chat's cluster tests use 11 and 12, bench/ 8 and 9).
CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/6"
DOOMED_REDIS_URL = "redis://127.0.0.1:6379/7"
# uvicorn as `make serve` runs it (Makefile UVICORN_FLAGS), minus its log config.
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "false",
    "--lifespan",
    "off",
    "--no-access-log",
    "--timeout-graceful-shutdown",
    "10",
]


@dataclass
class UvicornServer(LiveServer):
    """A LiveServer served by uvicorn instead of Daphne."""

    def command(self) -> list[str]:
        """Return uvicorn's command line, on this server's port."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *UVICORN_FLAGS,
        ]


def as_uvicorn(server: LiveServer, tmp_path: Path, name: str = "uvicorn") -> UvicornServer:
    """Return ``server`` (prepared by make_live_server) to be served by uvicorn on a port of its own."""
    port = free_port()
    return UvicornServer(
        url=f"http://127.0.0.1:{port}", port=port, env=server.env, log_path=tmp_path / f"{name}.log"
    )


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def open_ticker(server: LiveServer, client: httpx.AsyncClient):
    """Open the ticker socket on ``server`` with ``client``'s session; read past hello."""
    socket = await websockets.connect(
        f"{server.ws_url}/ws/ticker/",
        additional_headers={"Cookie": cookie_header(client), "Origin": server.url},
    )
    hello = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert hello["type"] == "hello" and hello["topic"] == "ticker", hello
    return socket


class Watcher:
    """Reads one ticker socket in the background: every prices event, and how it ended."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.events: list[dict] = []
        self.close_code: int | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for text in self.socket:
                event = json.loads(text)
                if event["type"] == "prices":
                    self.events.append(event)
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.socket.close_code

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    async def until(self, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` prices events arrived."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                assert not self.task.done(), f"socket closed ({self.close_code}) after {self.seqs}"
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.socket.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def assert_consecutive(seqs: list[int], who: str) -> None:
    """Each seq exactly one more than the one before: no gap, no duplicate, no reset."""
    assert seqs, f"{who}: no prices event"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{who}: seqs not consecutive: {seqs}"


# -- handshake -----------------------------------------------------------------------------


async def test_websocket_without_identity_is_refused_with_http_403(live_server):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            f"{live_server.ws_url}/ws/ticker/", additional_headers={"Origin": live_server.url}
        )
    assert refused.value.response.status_code == 403


# -- SIGTERM -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_sigterm_closes_ticker_sockets_with_1012(tmp_path, kind):
    prepared = make_live_server(tmp_path, TICKER_INTERVAL=INTERVAL)
    server = prepared if kind == "daphne" else as_uvicorn(prepared, tmp_path)
    server.start()
    try:
        async with login(server.url, "alice") as alice:
            socket = await open_ticker(server, alice)
            assert json.loads(await socket.recv())["type"] == "prices"
            server.process.terminate()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert closed.value.rcvd.code == 1012
    finally:
        server.stop()


async def test_sigterm_ends_ticker_sse_streams(tmp_path):
    with running_server(tmp_path, TICKER_INTERVAL=INTERVAL) as server:
        async with login(server.url, "alice") as alice, sse(alice, "/sse/ticker/") as stream:
            assert (await stream.next_event()).event == "hello"
            assert (await stream.next_event()).event == "prices"
            server.process.terminate()
            with pytest.raises(EOFError):  # the body ended; no protocol error
                while True:
                    await stream.next_event(timeout=5)


# -- a cluster of two processes over Redis --------------------------------------------------


def start_ticker_cluster(
    tmp_path: Path, redis_url: str, first: str = "daphne"
) -> tuple[LiveServer, LiveServer]:
    """Start Daphne (A) and uvicorn (B) on one database and one (flushed) Redis database, ticking
    every 0.2 s; ``first`` starts first, so its feed most likely leads."""
    try:
        redis.Redis.from_url(redis_url).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is needed for the cluster tests and is not reachable: {exc}")
    a = make_live_server(tmp_path, REDIS_URL=redis_url, TICKER_INTERVAL=INTERVAL, REALTIME_PRESENCE_TTL="3")
    b = as_uvicorn(a, tmp_path, "uvicorn-b")
    for server in (a, b) if first == "daphne" else (b, a):
        server.start()
    return a, b


def stop_ticker_cluster(servers: tuple[LiveServer, LiveServer], redis_url: str) -> None:
    for server in servers:
        with contextlib.suppress(ProcessLookupError):
            server.process.send_signal(signal.SIGCONT)  # in case a probe was cut short
        server.stop()
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def ticker_cluster(tmp_path):
    servers = start_ticker_cluster(tmp_path, CLUSTER_REDIS_URL)
    yield servers
    stop_ticker_cluster(servers, CLUSTER_REDIS_URL)


@pytest.fixture(params=["daphne", "uvicorn"], ids=["daphne-leads", "uvicorn-leads"])
def doomed_ticker_cluster(tmp_path, request):
    servers = start_ticker_cluster(tmp_path, DOOMED_REDIS_URL, first=request.param)
    yield servers
    stop_ticker_cluster(servers, DOOMED_REDIS_URL)


async def test_one_feed_publishes_at_a_time_across_two_processes(ticker_cluster):
    a, b = ticker_cluster
    async with login(a.url, "alice") as alice:
        on_a = Watcher(await open_ticker(a, alice))
        on_b = Watcher(await open_ticker(b, alice))
        # ~15 ticks in 3 s; a loaded machine ticks slower, so count ticks, not seconds.
        await asyncio.gather(on_a.until(12, timeout=30), on_b.until(12, timeout=30))
        seen = max(on_a.seqs[-1], on_b.seqs[-1])
        api = [(await alice.get(f"{server.url}/api/ticker")).json()["seq"] for server in (a, b)]
        seen_after = max(on_a.seqs[-1], on_b.seqs[-1])
        await on_a.close()
        await on_b.close()
    assert_consecutive(on_a.seqs, "client of A")
    assert_consecutive(on_b.seqs, "client of B")
    by_seq_a = {e["seq"]: e for e in on_a.events}
    by_seq_b = {e["seq"]: e for e in on_b.events}
    common = sorted(set(by_seq_a) & set(by_seq_b))
    assert len(common) >= 8, (on_a.seqs, on_b.seqs)
    # One feed: each seq is one snapshot (the same prices, the same moment) on both processes.
    assert [by_seq_a[s] for s in common] == [by_seq_b[s] for s in common]
    for seq in api:  # both processes' API read the cluster's state (stored before it is published)
        assert seen <= seq <= seen_after + 1, (seen, api, seen_after)


async def leader_of(servers: tuple[LiveServer, LiveServer], watchers: tuple[Watcher, Watcher]) -> int:
    """Return the index of the process whose feed publishes: pause A briefly and see if B's ticks stop.

    A count in between (a loaded machine slows B's feed) is probed again.
    """
    counts = []
    for _ in range(3):
        counts.append(during := await ticks_on_b_while_a_pauses(servers, watchers))
        if during <= 1 or during >= 4:
            return 0 if during <= 1 else 1
    raise AssertionError(f"{counts} ticks on B while A was paused: neither process leads?")


async def ticks_on_b_while_a_pauses(
    servers: tuple[LiveServer, LiveServer], watchers: tuple[Watcher, Watcher]
) -> int:
    """Pause A for a fraction of the feed's lease; return how many ticks B's client got meanwhile."""
    a, _ = servers
    on_b = watchers[1]
    await on_b.until(len(on_b.events) + 1)
    a.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(0.3)  # what A sent before the pause arrives
        before = len(on_b.events)
        await asyncio.sleep(1.2)  # 6 ticks, well inside the feed's 3 s lease
        return len(on_b.events) - before
    finally:
        a.process.send_signal(signal.SIGCONT)


async def test_when_the_leading_process_stops_the_other_feed_takes_over_from_the_same_seq(
    doomed_ticker_cluster,
):
    servers = doomed_ticker_cluster
    async with login(servers[0].url, "alice") as alice:
        watchers = tuple([Watcher(await open_ticker(server, alice)) for server in servers])
        leader = await leader_of(servers, watchers)
        survivor = watchers[1 - leader]
        await survivor.until(len(survivor.events) + 3)  # ticking again after the probe
        last_before = survivor.seqs[-1]

        servers[leader].process.terminate()  # SIGTERM
        await asyncio.to_thread(servers[leader].process.wait, 20)
        stopped_at = len(survivor.events)
        await survivor.until(stopped_at + 5, timeout=10)  # the other feed took over within a few seconds
        await survivor.close()
        await watchers[leader].close()
    assert watchers[leader].close_code == 1012
    assert survivor.seqs[-1] >= last_before + 5  # went on from where it was: no reset to 0
    assert_consecutive(survivor.seqs, "client of the surviving process")


async def test_when_the_leading_process_is_killed_the_other_feed_goes_on_from_the_same_seq(
    doomed_ticker_cluster,
):
    # SIGKILL lands anywhere in a tick; storing a seq is the only claim on it, so no half-done
    # tick of the dead feed can hold the other one up.
    servers = doomed_ticker_cluster
    async with login(servers[0].url, "alice") as alice:
        watchers = tuple([Watcher(await open_ticker(server, alice)) for server in servers])
        leader = await leader_of(servers, watchers)
        survivor = watchers[1 - leader]
        await survivor.until(len(survivor.events) + 3)
        last_before = survivor.seqs[-1]

        servers[leader].process.kill()
        await asyncio.to_thread(servers[leader].process.wait, 20)
        await survivor.until(len(survivor.events) + 5, timeout=15)  # the lease expired, the other feed leads
        await survivor.close()
        await watchers[leader].close()
    assert survivor.seqs[-1] >= last_before + 5
    assert_consecutive(survivor.seqs, "client of the surviving process")


async def test_a_leader_paused_past_its_lease_stores_and_publishes_no_stale_seq_when_it_wakes(
    doomed_ticker_cluster,
):
    servers = doomed_ticker_cluster
    async with login(servers[0].url, "alice") as alice:
        watchers = tuple([Watcher(await open_ticker(server, alice)) for server in servers])
        leader = await leader_of(servers, watchers)
        survivor = watchers[1 - leader]
        await survivor.until(len(survivor.events) + 3)

        servers[leader].process.send_signal(signal.SIGSTOP)  # its lease runs out; the other feed leads
        try:
            await survivor.until(len(survivor.events) + 5, timeout=15)
        finally:
            servers[leader].process.send_signal(signal.SIGCONT)  # it wakes with an old seq in hand
        await survivor.until(len(survivor.events) + 10, timeout=15)
        api = [(await alice.get(f"{server.url}/api/ticker")).json()["seq"] for server in servers]
        await survivor.close()
        await watchers[leader].close()
    assert_consecutive(survivor.seqs, "client of the process that took over")
    assert min(api) >= survivor.seqs[-1]  # both processes read the one latest snapshot


# -- seq outlives a restart ---------------------------------------------------------------


async def test_without_redis_a_restarted_server_goes_on_from_its_seq(tmp_path):
    with running_server(tmp_path, TICKER_INTERVAL=INTERVAL) as server:
        async with login(server.url, "alice") as alice:
            before = Watcher(await open_ticker(server, alice))
            await before.until(4)
            await asyncio.to_thread(server.stop)  # SIGTERM
            await before.task
            await asyncio.to_thread(server.start)
            api = (await alice.get(f"{server.url}/api/ticker")).json()["seq"]
            after = Watcher(await open_ticker(server, alice))
            await after.until(4)
            await after.close()
    assert before.close_code == 1012
    assert api >= before.seqs[-1]  # not back to 0
    assert after.seqs[0] >= before.seqs[-1] and after.seqs[-1] > before.seqs[-1]
    assert_consecutive(after.seqs, "client of the restarted server")
