"""The event bus through the database, in-process: the reader's cursor, retention, transactional publish.

The cross-process behaviour, through real servers: tests/live/test_bus_default.py
(the default setup) and tests/chat/test_cluster_postgres.py (REALTIME_BUS=postgres).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from realtime import bus, busreader, publish_sync
from realtime.busreader import GAP_SECONDS, Cursor
from realtime.models import BusEvent
from tests.realtime.echo import EchoTopic


def rows(*ids: int) -> list[tuple[int, str, str]]:
    return [(i, "g", "{}") for i in ids]


def test_cursor_delivers_each_row_once_in_id_order():
    cursor = Cursor(10)
    assert [r[0] for r in cursor.accept(rows(12, 11, 13), 0.0)] == [11, 12, 13]
    assert cursor.accept(rows(11, 12, 13), 0.0) == []
    assert cursor.last == 13 and cursor.gaps == {}


def test_cursor_reads_a_skipped_id_that_commits_late_and_gives_it_up_after_a_while():
    cursor = Cursor(0)
    assert [r[0] for r in cursor.accept(rows(1, 3, 5), 0.0)] == [1, 3, 5]
    assert set(cursor.gaps) == {2, 4}
    # id 4's transaction commits after 5 was read: still delivered, once.
    assert [r[0] for r in cursor.accept(rows(4), 1.0)] == [4]
    assert cursor.accept(rows(4), 1.5) == []
    # id 2 never comes (rolled back): forgotten once GAP_SECONDS went by.
    cursor.accept([], GAP_SECONDS + 1)
    assert cursor.gaps == {}
    assert cursor.accept(rows(2), GAP_SECONDS + 2) == []


def test_a_starting_cursor_reads_again_the_ids_missing_below_the_end():
    # 7 and 9 are not visible when the reader starts: open transactions (or rolled back).
    cursor = Cursor.at_end(10, [1, 2, 3, 4, 5, 6, 8, 10], 0.0)
    assert set(cursor.gaps) == {7, 9}
    assert [r[0] for r in cursor.accept(rows(9, 11), 1.0)] == [9, 11]
    cursor.accept([], GAP_SECONDS + 1)
    assert cursor.gaps == {}


def test_cursor_skips_a_second_row_of_one_event_id():
    cursor = Cursor(0)
    message = {"type": "realtime.event", "id": 7}
    assert not cursor.duplicate("room.a", message, 0.0)
    assert cursor.duplicate("room.a", message, 1.0)
    assert not cursor.duplicate("room.b", message, 1.0)
    assert not cursor.duplicate("room.a", {"type": "realtime.close", "code": 4401}, 1.0)
    assert not cursor.duplicate("room.a", {"type": "realtime.close", "code": 4401}, 1.0)


@pytest.mark.django_db
@override_settings(REALTIME_BUS_RETENTION_SECONDS=60)
def test_retention_deletes_only_rows_older_than_the_setting():
    now = timezone.now()
    BusEvent.objects.bulk_create(
        [BusEvent(created=now - timedelta(seconds=age), group="g", payload="{}") for age in (0, 30, 61, 3600)]
        * 600
    )
    assert busreader.delete_old() == 1200
    assert BusEvent.objects.count() == 1200


@pytest.mark.django_db
def test_a_process_that_does_not_serve_writes_its_publish_in_the_callers_transaction(monkeypatch):
    monkeypatch.setattr(bus, "serving", False)
    topic = EchoTopic("tx")
    with pytest.raises(ValueError), transaction.atomic():
        publish_sync(topic, {"type": "said", "id": 1, "text": "rolled back"})
        assert BusEvent.objects.count() == 1
        raise ValueError
    assert BusEvent.objects.count() == 0
    publish_sync(topic, {"type": "said", "id": 2, "text": "kept"})
    row = BusEvent.objects.get()
    message = json.loads(row.payload)
    assert row.group == topic.group and message["id"] == 2 and message["type"] == "realtime.event"


@pytest.mark.django_db(transaction=True)
def test_a_serving_process_delivers_a_publish_inside_a_transaction_only_once_it_commits(monkeypatch):
    monkeypatch.setattr(bus, "serving", True)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    topic = EchoTopic("tx")
    async_to_sync(layer.group_add)(topic.group, channel)

    with pytest.raises(ValueError), transaction.atomic():
        publish_sync(topic, {"type": "said", "id": 1, "text": "rolled back"})
        raise ValueError
    assert layer.receive_nowait(channel) is None

    with transaction.atomic():
        publish_sync(topic, {"type": "said", "id": 2, "text": "committed"})
        assert layer.receive_nowait(channel) is None  # not before the commit
    assert json.loads(layer.receive_nowait(channel)["text"])["text"] == "committed"
    # In memory: no row on a serving process's path (others' rows may come and go meanwhile).
    assert not BusEvent.objects.filter(group=topic.group).exists()


@pytest.mark.django_db(transaction=True)
@override_settings(REALTIME_BUS_POLL_SECONDS=0.05)
async def test_the_reader_hands_new_rows_to_the_layer_and_not_the_old_ones():
    await sync_to_async(bus.write)("echo.old", {"type": "realtime.event", "text": "old"})
    got: list[tuple[str, dict]] = []

    async def deliver(group: str, message: dict) -> None:
        got.append((group, message))

    reader = asyncio.create_task(busreader.poll(deliver))
    try:
        await asyncio.sleep(0.2)  # started: it reads from the end
        await sync_to_async(bus.write)("echo.new", {"type": "realtime.event", "text": "new"})
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.02)
    finally:
        reader.cancel()
    assert got == [("echo.new", {"type": "realtime.event", "text": "new"})]
