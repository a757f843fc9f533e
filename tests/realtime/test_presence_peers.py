"""The other processes' presence: deltas through the layer, snapshots through the real Redis store.

Another process is played by its registry entry (``registry.heartbeat`` with
its process id) and its deltas (a layer message to the reserved group);
this process follows both as a server does. Whole processes over Redis
and PostgreSQL: tests/chat/test_cluster.py, tests/realtime/test_pg_cluster.py.
"""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from realtime import presence, presence_peers, registry

TOPIC = "echo.peers"


async def delta(pid: str, seq: int, joins: list[str] = (), leaves: list[str] = ()) -> None:
    """Deliver a batch of deltas of process ``pid`` as the bus does."""
    message = {"type": presence_peers.DELTA, "pid": pid, "seq": seq, "changes": {TOPIC: [joins, leaves]}}
    await get_channel_layer().group_send(presence_peers.GROUP, message)


async def snapshot(pid: str, seq: int, names: list[str]) -> None:
    """Write process ``pid``'s registry entry: who it holds, after its batch ``seq``."""
    await registry.heartbeat({"topics": {TOPIC: names}, "seq": seq}, process_id=pid)


async def test_a_delta_applies_at_once_and_its_snapshot_does_not_count_the_user_twice(shared):
    await presence_peers.subscribe()
    await delta("other", 1, joins=["carol"])
    assert await presence.topic_users(TOPIC) == ["carol"]
    await snapshot("other", 1, ["carol"])  # read by topic_users: the same set, not one more count
    assert await presence.topic_users(TOPIC) == ["carol"]
    await delta("other", 2, leaves=["carol"])
    assert await presence.topic_users(TOPIC) == []


async def test_a_snapshot_written_before_a_leave_does_not_bring_the_user_back(shared):
    await presence_peers.subscribe()
    await snapshot("other", 1, ["carol"])
    assert await presence.topic_users(TOPIC) == ["carol"]
    await delta("other", 2, leaves=["carol"])
    await delta("other", 2, joins=["carol"])  # delivered twice: applied once
    await snapshot("other", 1, ["carol", "dave"])  # rewritten, still older than the leave
    assert await presence.topic_users(TOPIC) == []
    await snapshot("other", 2, ["dave"])
    assert await presence.topic_users(TOPIC) == ["dave"]


async def test_a_lost_delta_is_repaired_by_the_next_snapshot(shared):
    await presence_peers.subscribe()
    await delta("other", 1, joins=["carol"])
    # Batch 2 (dave joins, carol leaves) never arrives; the snapshot written after it does.
    await delta("other", 3, joins=["erin"])
    assert await presence.topic_users(TOPIC) == ["carol", "erin"]
    await snapshot("other", 3, ["dave", "erin"])
    assert await presence.topic_users(TOPIC) == ["dave", "erin"]


async def test_a_dead_processs_entries_go_with_its_registry_entry(shared, settings):
    settings.REALTIME_PRESENCE_TTL = 1
    await presence_peers.subscribe()
    await snapshot("doomed", 1, ["carol"])
    await delta("unregistered", 1, joins=["dave"])  # started, not registered yet: kept for a TTL
    assert await presence.topic_users(TOPIC) == ["carol", "dave"]
    await asyncio.sleep(1.2)  # neither renews its entry
    assert await presence.topic_users(TOPIC) == []


async def test_this_processs_own_deltas_come_back_and_are_ignored(shared):
    await presence_peers.subscribe()
    await delta(registry.PROCESS_ID, 1, joins=["carol"])
    assert await presence.topic_users(TOPIC) == []
