"""Limits that hold under concurrency: the rate limit, the per-user connection cap, the process registry.

Atomic in one process over real Redis; without Redis, an in-process log that
no cache eviction can reset. Through an app's posts and sockets, and across
real server processes: tests/chat/test_limits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

from realtime import rate_allow, ratelimit, redis_store, registry, slots, stores
from realtime.process import process
from tests.conftest import LIMITS_REDIS_URL, free_port

REDIS_URL = LIMITS_REDIS_URL
NOBODY_LISTENS = f"redis://127.0.0.1:{free_port()}/0"


# -- rate limit, one process ----------------------------------------------------


async def test_concurrent_hits_over_redis_count_exactly_and_slide(shared):
    results = await asyncio.gather(*(rate_allow(user_id=1, key="k", rate="20/2s") for _ in range(50)))
    assert results.count(True) == 20
    assert not await rate_allow(user_id=1, key="k", rate="20/2s")
    assert await rate_allow(user_id=2, key="k", rate="20/2s"), "per user"
    assert await rate_allow(user_id=1, key="other", rate="20/2s"), "per key"
    # Refused hits are not recorded: once the window slid past the 20, the user may post again.
    await asyncio.sleep(2.1)
    assert await rate_allow(user_id=1, key="k", rate="20/2s")
    assert 0 < shared.pttl(redis_store.rate_key(1, "k")) <= 2001, "a log expires with its window"


async def test_rate_limit_fails_open_while_redis_is_down(settings, caplog):
    settings.REDIS_URL = NOBODY_LISTENS
    settings.REALTIME_BUS = "redis"
    with caplog.at_level(logging.WARNING, logger="realtime.ratelimit"):
        assert all([await rate_allow(user_id=1, key="k", rate="1/10s") for _ in range(3)])
    assert "message allowed" in caplog.text
    await stores.close()


# -- rate limit without Redis: the in-process log ---------------------------------


def test_local_log_drops_expired_windows_and_keeps_live_ones():
    now = [0.0]
    log = ratelimit.LocalLog(clock=lambda: now[0])
    for n in range(10_000):
        assert log.hit(f"k{n}", 2, 10)
    assert log.hit("live", 1, 1000)
    assert len(log) == 10_001
    now[0] = 10 + log.SWEEP_SECONDS  # every 10 s window is over; the 1000 s one is not
    assert log.hit("k0", 2, 10)
    assert len(log) == 2, "expired windows are dropped, memory follows recent activity"
    assert not log.hit("live", 1, 1000), "a window that can still refuse is never dropped"


def test_local_log_slides_and_counts_refusals_as_nothing():
    now = [0.0]
    log = ratelimit.LocalLog(clock=lambda: now[0])
    assert [log.hit("k", 3, 10) for _ in range(4)] == [True, True, True, False]
    now[0] = 9.9
    assert not log.hit("k", 3, 10)
    now[0] = 10.0  # the first three leave the window together
    assert [log.hit("k", 3, 10) for _ in range(4)] == [True, True, True, False]


# -- connection slots and the registry, one process over Redis ---------------------------


async def test_concurrent_admissions_take_exactly_the_limit(shared, monkeypatch):
    # Two processes' worth of handshakes: this process, and another one alive in the registry.
    results = await asyncio.gather(*(slots.admit(user_id=1, limit=20) for _ in range(15)))
    monkeypatch.setattr(registry, "PROCESS_ID", "other")
    results += await asyncio.gather(*(slots.slot_take(user_id=1, limit=20) for _ in range(15)))
    monkeypatch.undo()
    admitted = [r if isinstance(r, bool) else r[0] for r in results]
    assert admitted.count(True) == 20
    held = {k.decode(): int(v) for k, v in shared.hgetall(redis_store.slots_key(1)).items()}
    assert held == {registry.PROCESS_ID: 15, "other": 5}

    for _ in range(15):
        slots.release(user_id=1)
    async with asyncio.timeout(5):
        while shared.hget(redis_store.slots_key(1), registry.PROCESS_ID) is not None:
            await asyncio.sleep(0.01)
    assert slots.local_connections() == 0
    assert sum([await slots.admit(user_id=1, limit=20) for _ in range(16)]) == 15


async def test_a_dead_processs_slots_come_back(shared):
    # A process that held 20 slots stopped renewing its registry entry (crashed).
    shared.hset(redis_store.slots_key(1), "dead", 20)
    shared.zadd(redis_store.REGISTRY_KEY, {"dead": 1.0})  # expired long ago
    assert await slots.admit(user_id=1, limit=20)
    assert shared.hget(redis_store.slots_key(1), "dead") is None


async def test_slots_are_restored_after_redis_loses_them(shared):
    for _ in range(3):
        assert await slots.admit(user_id=1, limit=20)
    shared.flushdb()  # Redis restarted empty
    # The next heartbeat finds this process gone, and puts its slots back.
    await registry._publish(stores.required())
    assert shared.hget(redis_store.slots_key(1), registry.PROCESS_ID) == b"3"
    assert shared.zscore(redis_store.REGISTRY_KEY, registry.PROCESS_ID) is not None


async def test_admission_counts_this_process_only_while_redis_is_down(settings, caplog):
    settings.REDIS_URL = NOBODY_LISTENS
    settings.REALTIME_BUS = "redis"
    with caplog.at_level(logging.WARNING, logger="realtime.slots"):
        assert [await slots.admit(user_id=1, limit=2) for _ in range(3)] == [True, True, False]
    assert "counting this process's only" in caplog.text
    slots.release(user_id=1)
    assert await slots.admit(user_id=1, limit=2)
    await stores.close()
    process.reset()


async def test_processes_registering_together_all_stay_listed(shared):
    pids = [f"p{n}" for n in range(40)]
    snapshot = {"topics": {"room.x": ["alice"]}}
    for _ in range(3):  # every heartbeat of each, all at the same moment
        await asyncio.gather(*(registry.heartbeat(snapshot, process_id=pid) for pid in pids))
        # This test process may list itself too (its own heartbeat, once a shared bus is set).
        listed = {m.decode() for m in shared.zrange(redis_store.REGISTRY_KEY, 0, -1)}
        assert listed - {registry.PROCESS_ID} == set(pids)
    others = await registry.others(process_id="p0")
    assert set(others) - {registry.PROCESS_ID} == set(pids) - {"p0"}
    assert json.loads(others["p1"]) == snapshot


async def test_an_expired_process_leaves_the_registry(shared, settings):
    settings.REALTIME_PRESENCE_TTL = 1
    await registry.heartbeat({"topics": {}}, process_id="short-lived")
    await registry.heartbeat({"topics": {}}, process_id="alive")
    assert "short-lived" in await registry.others(process_id="alive")
    await asyncio.sleep(1.2)
    await registry.heartbeat({"topics": {}}, process_id="alive")
    assert set(await registry.others(process_id="alive")) <= {registry.PROCESS_ID}  # itself, at most
    assert shared.zscore(redis_store.REGISTRY_KEY, "short-lived") is None, "pruned by score"
