"""The ticker's one feed across two server processes on PostgreSQL alone (REALTIME_BUS=postgres).

One process at a time holds the feed's lease (a row in the database, with
an expiry): the stored seq advances at one feed's pace, and when the
leader is killed with SIGKILL the other process takes the feed over within
a few seconds, going on from the stored seq. Until the bus carries events
between processes, a client sees the ticks of its own process's feed only,
so these tests read the stored seq and the survivor's own clients.
"""

from __future__ import annotations

import asyncio
import signal
import time

import psycopg
import pytest

from tests import pg_cluster
from tests.sse_client import login
from tests.ticker.test_ticker_live import INTERVAL, Watcher, assert_consecutive, open_ticker

pytestmark = pytest.mark.slow


@pytest.fixture
async def servers(tmp_path):
    pair = pg_cluster.prepare(tmp_path, TICKER_INTERVAL=INTERVAL, REALTIME_PRESENCE_TTL="3")
    await pg_cluster.start_all(pair)
    yield pair
    await asyncio.to_thread(pg_cluster.stop_all, pair)


async def stored_seq(server, client) -> int:
    """Return the latest seq stored, as ``server`` reads it."""
    return (await client.get(f"{server.url}/api/ticker")).json()["seq"]


def leases_held(server) -> int:
    with psycopg.connect(server.env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM realtime_lease WHERE expires > now()").fetchone()[0]


async def leader_of(servers, client) -> int:
    """Return the index of the process whose feed runs: pause the first briefly, see if the seq still moves.

    A count in between (a loaded machine slows the feed) is probed again.
    """
    first, second = servers
    counts = []
    for _ in range(3):
        first.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)
            before = await stored_seq(second, client)
            await asyncio.sleep(1.2)  # 6 ticks, well inside the feed's 3 s lease
            counts.append(during := await stored_seq(second, client) - before)
        finally:
            first.process.send_signal(signal.SIGCONT)
        if during <= 1 or during >= 4:
            return 0 if during <= 1 else 1
        await asyncio.sleep(1)
    raise AssertionError(f"{counts} ticks stored while the first process was paused: neither leads?")


async def test_one_feed_at_a_time_and_a_killed_leaders_feed_taken_over_from_the_same_seq(servers):
    async with login(servers[0].url, "alice") as alice:
        watchers = [Watcher(await open_ticker(server, alice)) for server in servers]
        await asyncio.sleep(1)
        started, seq_then = time.monotonic(), await stored_seq(servers[0], alice)
        await asyncio.sleep(3)
        ticks = await stored_seq(servers[1], alice) - seq_then
        elapsed = time.monotonic() - started
        assert leases_held(servers[0]) == 1
        # One feed stores a tick every 0.2 s at most; two would store about twice as many.
        assert 0 < ticks <= elapsed / float(INTERVAL) * 1.25, (ticks, elapsed)

        leader = await leader_of(servers, alice)
        survivor = watchers[1 - leader]
        await asyncio.sleep(0.5)
        servers[leader].process.kill()  # SIGKILL: the lease is not given back, it expires
        await asyncio.to_thread(servers[leader].process.wait, 20)
        last_before = await stored_seq(servers[1 - leader], alice)
        seen = len(survivor.events)
        await survivor.until(seen + 5, timeout=10)  # the lease (3 s) expired, the survivor's feed leads
        taken_over = survivor.seqs[seen:]
        await survivor.close()
        await watchers[leader].close()
    assert taken_over[0] >= last_before, "the feed went on from the stored seq, not back"
    assert_consecutive(taken_over, "client of the process that took over")
    assert await asyncio.to_thread(leases_held, servers[1 - leader]) == 1


async def test_a_leader_paused_past_its_lease_stores_nothing_stale_when_it_wakes(servers):
    async with login(servers[0].url, "alice") as alice:
        watchers = [Watcher(await open_ticker(server, alice)) for server in servers]
        leader = await leader_of(servers, alice)
        survivor = watchers[1 - leader]
        seen = len(survivor.events)  # the snapshot its client opened with, and the bus's ticks if any
        servers[leader].process.send_signal(signal.SIGSTOP)  # its lease runs out; the other feed leads
        try:
            await survivor.until(seen + 5, timeout=15)
        finally:
            servers[leader].process.send_signal(signal.SIGCONT)  # it wakes with an old seq in hand
        await survivor.until(len(survivor.events) + 10, timeout=15)
        api = [await stored_seq(server, alice) for server in servers]
        await survivor.close()
        await watchers[leader].close()
    assert_consecutive(survivor.seqs[seen:], "client of the process that took over")
    assert min(api) >= survivor.seqs[-1], "both processes read the one latest snapshot"
    assert await asyncio.to_thread(leases_held, servers[0]) == 1
