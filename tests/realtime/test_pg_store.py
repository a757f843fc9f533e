"""The PostgreSQL store (REALTIME_BUS=postgres), in one process: each operation atomic, as over Redis.

The store's tables and functions come from the core's migration, applied
to a scratch PostgreSQL database of this module; whatever database the
suite itself runs on.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging

import psycopg
import pytest

from realtime import pg_store, rate_allow, registry, slots, stores
from realtime.process import process
from tests import pg_cluster
from tests.conftest import free_port

MIGRATION = importlib.import_module("realtime.migrations.0006_shared_state")


@pytest.fixture(scope="module")
def database():
    """A scratch database with the store's tables and functions (the core's migration's SQL)."""
    url = pg_cluster.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MIGRATION.FORWARD)
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture
async def shared(settings, monkeypatch, database):
    """This process on REALTIME_BUS=postgres, its store in the scratch database (emptied after)."""
    settings.REALTIME_BUS = "postgres"
    monkeypatch.setattr(pg_store, "conninfo", lambda: database)
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn
        await stores.close()
        process.reset()
        conn.execute("TRUNCATE realtime_process, realtime_slot, realtime_rate_log, realtime_lease")


def slot_rows(conn, user_id: int) -> dict[str, int]:
    rows = conn.execute("SELECT process_id, connections FROM realtime_slot WHERE user_id = %s", (user_id,))
    return dict(rows.fetchall())


# -- rate limit ------------------------------------------------------------------------------


async def test_concurrent_hits_count_exactly_and_slide(shared):
    results = await asyncio.gather(*(rate_allow(user_id=1, key="k", rate="20/2s") for _ in range(50)))
    assert results.count(True) == 20
    assert not await rate_allow(user_id=1, key="k", rate="20/2s")
    assert await rate_allow(user_id=2, key="k", rate="20/2s"), "per user"
    assert await rate_allow(user_id=1, key="other", rate="20/2s"), "per key"
    # Refused hits are not recorded: once the window slid past the 20, the user may post again.
    await asyncio.sleep(2.1)
    assert await rate_allow(user_id=1, key="k", rate="20/2s")
    log = shared.execute("SELECT cardinality(stamps) FROM realtime_rate_log WHERE key = '1:k'")
    (stamps,) = log.fetchone()
    assert stamps == 1, "hits past the window leave the log"


async def test_heartbeats_drop_logs_past_their_window(shared):
    assert await rate_allow(user_id=1, key="short", rate="5/1s")
    assert await rate_allow(user_id=1, key="long", rate="5/1h")
    await asyncio.sleep(1.1)
    await registry.heartbeat({"topics": {}})
    keys = {key for (key,) in shared.execute("SELECT key FROM realtime_rate_log").fetchall()}
    assert keys == {"1:long"}


async def test_rate_limit_fails_open_while_postgresql_is_down(shared, monkeypatch, caplog):
    monkeypatch.setattr(pg_store, "conninfo", lambda: f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    monkeypatch.setattr(pg_store, "POOL_TIMEOUT", 0.3)
    with caplog.at_level(logging.WARNING, logger="realtime.ratelimit"):
        assert all([await rate_allow(user_id=1, key="k", rate="1/10s") for _ in range(2)])
    assert "message allowed" in caplog.text


# -- connection slots and the registry ---------------------------------------------------------


async def test_concurrent_admissions_take_exactly_the_limit(shared, monkeypatch):
    # Two processes' worth of handshakes: this process, and another one alive in the registry.
    results = await asyncio.gather(*(slots.admit(user_id=1, limit=20) for _ in range(15)))
    monkeypatch.setattr(registry, "PROCESS_ID", "other")
    results += await asyncio.gather(*(slots.slot_take(user_id=1, limit=20) for _ in range(15)))
    monkeypatch.undo()
    admitted = [r if isinstance(r, bool) else r[0] for r in results]
    assert admitted.count(True) == 20
    assert slot_rows(shared, 1) == {registry.PROCESS_ID: 15, "other": 5}

    for _ in range(15):
        slots.release(user_id=1)
    async with asyncio.timeout(5):
        while registry.PROCESS_ID in slot_rows(shared, 1):
            await asyncio.sleep(0.01)
    assert slots.local_connections() == 0
    assert sum([await slots.admit(user_id=1, limit=20) for _ in range(16)]) == 15


async def test_a_dead_processs_slots_come_back(shared):
    # A process that held 20 slots stopped renewing its registry entry (crashed).
    shared.execute("INSERT INTO realtime_process VALUES ('dead', now() - interval '1 second', NULL)")
    shared.execute("INSERT INTO realtime_slot VALUES (1, 'dead', 20)")
    assert await slots.admit(user_id=1, limit=20)
    assert "dead" not in slot_rows(shared, 1)


async def test_a_heartbeat_drops_the_slots_of_expired_processes(shared):
    shared.execute("INSERT INTO realtime_process VALUES ('dead', now() - interval '1 second', NULL)")
    shared.execute("INSERT INTO realtime_slot VALUES (1, 'dead', 2), (2, 'dead', 1)")
    await registry.heartbeat({"topics": {}})
    assert shared.execute("SELECT count(*) FROM realtime_slot").fetchone() == (0,)
    assert shared.execute("SELECT process_id FROM realtime_process").fetchall() == [(registry.PROCESS_ID,)]


async def test_slots_are_restored_after_the_store_loses_them(shared):
    for _ in range(3):
        assert await slots.admit(user_id=1, limit=20)
    # PostgreSQL crashed: it empties UNLOGGED tables when it starts again.
    shared.execute("TRUNCATE realtime_process, realtime_slot")
    await registry._publish(stores.required())  # the next heartbeat finds this process gone
    assert slot_rows(shared, 1) == {registry.PROCESS_ID: 3}


async def test_admission_counts_this_process_only_while_postgresql_is_down(shared, monkeypatch, caplog):
    monkeypatch.setattr(pg_store, "conninfo", lambda: f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    monkeypatch.setattr(pg_store, "POOL_TIMEOUT", 0.3)
    with caplog.at_level(logging.WARNING, logger="realtime.slots"):
        assert [await slots.admit(user_id=1, limit=2) for _ in range(3)] == [True, True, False]
    assert "counting this process's only" in caplog.text


async def test_processes_registering_together_all_stay_listed(shared):
    pids = [f"p{n}" for n in range(40)]
    snapshot = {"topics": {"room.x": ["alice"]}}
    for _ in range(3):  # every heartbeat of each, all at the same moment
        anew = await asyncio.gather(*(registry.heartbeat(snapshot, process_id=pid) for pid in pids))
        assert shared.execute("SELECT count(*) FROM realtime_process").fetchone() == (40,)
    assert anew == [False] * 40, "renewed, not registered anew"
    others = await registry.others(process_id="p0")
    assert set(others) == set(pids) - {"p0"}
    assert json.loads(others["p1"]) == snapshot


async def test_an_expired_process_leaves_the_registry(shared, settings):
    settings.REALTIME_PRESENCE_TTL = 1
    await registry.heartbeat({"topics": {}}, process_id="short-lived")
    await registry.heartbeat({"topics": {}}, process_id="alive")
    assert "short-lived" in await registry.others(process_id="alive")
    await asyncio.sleep(1.2)
    assert await registry.others(process_id="alive") == {}, "expired: no longer counted"
    assert await registry.heartbeat({"topics": {}}, process_id="alive") is True, "alive expired too"
    assert shared.execute("SELECT process_id FROM realtime_process").fetchall() == [("alive",)]


# -- leases of exclusive jobs ------------------------------------------------------------------


async def test_one_lease_holder_at_a_time_and_a_takeover_once_it_expires(shared):
    store = stores.required()
    first, second = store.lease("feed", 0.5), store.lease("feed", 0.5)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.renew()
    await asyncio.sleep(0.6)  # the holder stalled past its lease
    assert await second.acquire()
    assert not await first.renew(), "a lease taken over is lost for good"
    await second.release()
    assert await first.acquire(), "a lease given back is free at once"
    assert not await store.lease("feed", 0.5).acquire()
    assert await store.lease("other", 0.5).acquire(), "one lease per job"


async def test_every_operation_at_once_neither_fails_nor_deadlocks(shared, monkeypatch):
    # Several processes' heartbeats (some expiring as they go), handshakes, releases and rate checks
    # of the same users at the same moment: each operation takes its locks so that none waits in a circle.
    monkeypatch.setattr(pg_store, "MAX_CONNECTIONS", 8)
    store = stores.required()
    pids = [f"p{n}" for n in range(4)]

    async def churn(pid: str, user_id: int) -> None:
        for round_ in range(10):
            await store.heartbeat(process_id=pid, ttl=0.05 if round_ % 3 else 30, snapshot={"topics": {}})
            admitted, _ = await store.slot_take(user_id=user_id, process_id=pid, limit=1000, ttl=0.05)
            await store.rate_hit(user_id=user_id, key="k", count=1000, seconds=0.05)
            if admitted:
                await store.slot_give(user_id=user_id, process_id=pid)
            await store.slots_set(process_id=pid, counts={user_id: round_ % 2, user_id + 1: 1})

    async with asyncio.TaskGroup() as group:  # one failing cancels the others, and the test fails
        for pid in pids:
            for user_id in range(1, 5):
                group.create_task(churn(pid, user_id))
