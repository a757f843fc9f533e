"""Metrics through the chat's rooms: what a session, a publish, a refusal and a slow reader move.

In-process tests read prometheus_client's registry before and after; the
slow ones script a session against a real server, and a cluster, and
scrape /metrics (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import httpx
import pytest
import websockets
from channels.layers import get_channel_layer
from django.test import override_settings

from chat import events as chat_events
from chat.models import Message, Room
from chat.topic import RoomTopic
from project.asgi import application
from realtime import events
from tests.asgi import joined, make_user, session_cookie, ws
from tests.chat.test_cluster import start_cluster, stop_cluster
from tests.chat.test_consumers import announce, outputs_until_close, stalled_socket
from tests.conftest import running_server
from tests.realtime.test_metrics import Samples, deltas, key, local_samples, scrape, scrape_until, value
from tests.sse_client import login, sse

CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/15"
ROOM = "/ws/rooms/general/"
WS_ROOM = {"transport": "websocket", "topic": "room"}
SSE_ROOM = {"transport": "sse", "topic": "room"}


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_session_moves_each_counter_by_exactly_one():
    alice = await make_user("alice")
    before = local_samples()
    async with joined(ROOM, user=alice) as a:
        during = local_samples()
        for name, labels in (("realtime_connections_open", WS_ROOM), ("realtime_connection_slots", {})):
            assert value(during, name, **labels) == value(before, name, **labels) + 1
        await a.send_to(text_data="not json")
        assert (await a.receive_json_from())["code"] == "bad_json"
        await a.send_json_to({"type": "message", "text": "hi"})
        assert (await a.receive_json_from())["type"] == "message"
    after = local_samples()
    expected = {
        key("realtime_connections_opened_total", **WS_ROOM): 1,
        key("realtime_connections_closed_total", code="1000", **WS_ROOM): 1,
        key("realtime_connection_duration_seconds_count", **WS_ROOM): 1,
        key("realtime_connections_open", **WS_ROOM): 0,
        key("realtime_connection_slots"): 0,
        key("realtime_client_errors_total", transport="websocket", code="bad_json"): 1,
        key("realtime_events_published_total", topic="room"): 1,
        key("realtime_deliveries_total"): 1,
        key("realtime_publish_latency_seconds_count"): 1,
    }
    assert deltas(before, after, expected) == expected


@pytest.mark.django_db(transaction=True)
async def test_deliveries_are_counted_per_recipient_and_latency_once_per_publish():
    alice, bob, carol = [await make_user(name) for name in ("alice", "bob", "carol")]
    async with joined(ROOM, user=alice) as a, joined(ROOM, user=bob) as b, joined(ROOM, user=carol) as c:
        before = local_samples()
        await events.publish(RoomTopic("general"), chat_events.announcement("all"))
        for comm in (a, b, c):
            assert (await comm.receive_json_from())["text"] == "all"
        after = local_samples()
    expected = {
        key("realtime_events_published_total", topic="room"): 1,
        key("realtime_deliveries_total"): 3,
        key("realtime_publish_latency_seconds_count"): 1,
    }
    assert deltas(before, after, expected) == expected
    latency = "realtime_publish_latency_seconds_sum"
    assert value(after, latency) > value(before, latency)


@pytest.mark.django_db(transaction=True)
async def test_refusals_are_counted_by_reason():
    before = local_samples()
    anonymous = ws(ROOM)
    assert not (await anonymous.connect())[0]
    alice = await make_user("alice")
    with override_settings(REALTIME_MAX_CONNECTIONS_PER_USER=1):
        async with joined(ROOM, user=alice):
            extra = ws(ROOM, cookie=await session_cookie(alice))
            assert not (await extra.connect())[0]
    after = local_samples()
    expected = {
        key("realtime_connections_refused_total", transport="websocket", reason="no_identity"): 1,
        key("realtime_connections_refused_total", transport="websocket", reason="limit"): 1,
        key("realtime_connections_opened_total", **WS_ROOM): 1,
    }
    assert deltas(before, after, expected) == expected


@pytest.mark.django_db(transaction=True)
async def test_a_slow_reader_closed_1013_is_counted_with_its_overflow():
    layer = get_channel_layer()
    before = local_samples()
    async with stalled_socket() as (_, a, writable):
        (channel,) = layer.groups[RoomTopic("general").group]
        published = layer.get_capacity(channel) + 10
        await announce(published)
        writable.set()
        received, code = await outputs_until_close(a)
    assert code == 1013
    after = local_samples()
    expected = {
        key("realtime_connections_closed_total", code="1013", **WS_ROOM): 1,
        key("realtime_slow_consumer_overflows_total"): 1,
        key("realtime_events_published_total", topic="room"): published,
        # Handed to the socket: what it received; the rest was dropped while it overflowed.
        key("realtime_deliveries_total"): len(received),
        key("realtime_connections_open", **WS_ROOM): 0,
    }
    assert deltas(before, after, expected) == expected


@pytest.mark.django_db(transaction=True)
async def test_catch_up_and_skipped_duplicates_are_counted():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    first, second = [await Message.objects.acreate(room=room, user=alice, text=t) for t in ("a", "b")]
    before = local_samples()
    comm = ws(f"{ROOM}?after={first.pk}", cookie=await session_cookie(alice))
    await comm.connect()
    assert (await comm.receive_json_from())["type"] == "hello"
    assert (await comm.receive_json_from())["text"] == "b"  # replayed
    await events.publish(RoomTopic("general"), chat_events.message(second))  # and live: skipped
    assert (await comm.receive_json_from())["type"] == "presence"
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()
    after = local_samples()
    expected = {
        key("realtime_catch_up_events_total", topic="room"): 1,
        key("realtime_duplicate_events_skipped_total", topic="room"): 1,
    }
    assert deltas(before, after, expected) == expected


@pytest.mark.django_db(transaction=True)
async def test_http_errors_are_counted_by_code():
    alice = await make_user("alice")
    before = local_samples()
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/api/me")).status_code == 401
        http.cookies.update(dict([(await session_cookie(alice)).split("=", 1)]))
        assert (await http.get("/api/rooms/general/messages?limit=0")).status_code == 400
    after = local_samples()
    expected = {
        key("realtime_client_errors_total", transport="http", code="unauthorized"): 1,
        key("realtime_client_errors_total", transport="http", code="invalid"): 1,
    }
    assert deltas(before, after, expected) == expected


@pytest.mark.django_db(transaction=True)
async def test_one_info_line_per_connection_end_without_identity_or_text(caplog):
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    caplog.set_level(logging.INFO, logger="realtime.connections")
    async with joined(ROOM, user=alice) as a:
        await a.send_json_to({"type": "message", "text": "secret words"})
        await a.receive_json_from()
    (record,) = [r for r in caplog.records if r.name == "realtime.connections"]
    assert record.levelno == logging.INFO
    line = record.getMessage()
    assert line.startswith("connection ended: transport=websocket topic=room duration=")
    assert line.endswith("s code=1000")
    assert (record.transport, record.topic, record.code) == ("websocket", "room", "1000")
    assert isinstance(record.duration_s, float)
    session_key = cookie.split("=", 1)[1]
    for secret in ("alice", "secret words", session_key, "general"):
        assert secret not in line


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def read_until(ws, kind: str) -> dict:
    while (event := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != kind:
        pass
    return event


@pytest.mark.slow
async def test_a_scripted_session_against_daphne_moves_each_counter_exactly(tmp_path):
    room = f"metrics-{uuid.uuid4().hex[:8]}"
    with running_server(tmp_path, REALTIME_RATE_LIMIT="2/10s") as server:
        before = scrape(server.url)
        ws_url = f"{server.ws_url}/ws/rooms/{room}/"
        # Refused: no identity, over both transports.
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(ws_url, additional_headers={"Origin": server.url})
        assert httpx.get(f"{server.url}/sse/rooms/{room}/").status_code == 401
        async with login(server.url, "alice") as alice, login(server.url, "bob") as bob:
            headers = {"Cookie": cookie_header(alice), "Origin": server.url}
            a = await websockets.connect(ws_url, additional_headers=headers)
            await read_until(a, "presence")
            async with sse(alice, f"/sse/rooms/{room}/") as stream, sse(bob, f"/sse/rooms/{room}/") as gone:
                assert (await stream.next_event()).event == "hello"
                assert (await gone.next_event()).event == "hello"
                await a.send('{"type": "message", "text": "one"}')
                assert (await read_until(a, "message"))["text"] == "one"
                await a.send("not json")
                assert (await read_until(a, "error"))["code"] == "bad_json"
                await a.send('{"type": "message", "text": "two"}')
                assert (await read_until(a, "message"))["text"] == "two"
                await a.send('{"type": "message", "text": "three"}')  # over 2/10s
                assert (await read_until(a, "error"))["code"] == "rate_limited"
                # A second socket replays both messages, then says goodbye (1000).
                b = await websockets.connect(f"{ws_url}?after=0", additional_headers=headers)
                await read_until(b, "presence")
                await b.close()
                # Both streams are cut by their clients when this block ends (client_gone).
            sse_open = value(before, "realtime_connections_open", **SSE_ROOM)
            scrape_until(
                [server.url], lambda s: value(s[0], "realtime_connections_open", **SSE_ROOM) == sse_open
            )
            # alice logs out: her socket (4401) and her new stream end.
            async with sse(alice, f"/sse/rooms/{room}/") as stream:
                assert (await stream.next_event()).event == "hello"
                response = await alice.post(
                    "/accounts/logout/", headers={"X-CSRFToken": alice.cookies["csrftoken"]}
                )
                assert response.status_code in (200, 302)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(a.recv(), 5)
                assert closed.value.rcvd.code == 4401
                with pytest.raises(EOFError):
                    while True:
                        await stream.next(timeout=5)

        def settled(samples: list[Samples]) -> bool:
            (now,) = samples
            return all(
                value(now, "realtime_connections_open", **labels)
                == value(before, "realtime_connections_open", **labels)
                for labels in (WS_ROOM, SSE_ROOM)
            ) and value(now, "realtime_connections_closed_total", code="4401", **WS_ROOM) > value(
                before, "realtime_connections_closed_total", code="4401", **WS_ROOM
            )

        (after,) = scrape_until([server.url], settled)
        log = server.log_path.read_text(errors="replace")

    expected = {
        key("realtime_connections_open", **WS_ROOM): 0,
        key("realtime_connections_open", **SSE_ROOM): 0,
        key("realtime_connection_slots"): 0,
        key("realtime_connections_opened_total", **WS_ROOM): 2,
        key("realtime_connections_opened_total", **SSE_ROOM): 3,
        key("realtime_connections_refused_total", transport="websocket", reason="no_identity"): 1,
        key("realtime_connections_refused_total", transport="sse", reason="no_identity"): 1,
        key("realtime_connections_closed_total", code="4401", **WS_ROOM): 1,
        key("realtime_connections_closed_total", code="1000", **WS_ROOM): 1,
        key("realtime_connections_closed_total", code="4401", **SSE_ROOM): 1,
        key("realtime_connections_closed_total", code="client_gone", **SSE_ROOM): 2,
        key("realtime_connection_duration_seconds_count", **WS_ROOM): 2,
        key("realtime_connection_duration_seconds_count", **SSE_ROOM): 3,
        key("realtime_events_published_total", topic="room"): 2,
        # "one" and "two", each to alice's socket and both streams.
        key("realtime_deliveries_total"): 6,
        key("realtime_publish_latency_seconds_count"): 2,
        key("realtime_catch_up_events_total", topic="room"): 2,
        key("realtime_duplicate_events_skipped_total", topic="room"): 0,
        key("realtime_client_errors_total", transport="websocket", code="bad_json"): 1,
        key("realtime_client_errors_total", transport="websocket", code="rate_limited"): 1,
        key("realtime_client_errors_total", transport="http", code="unauthorized"): 1,
        key("realtime_rate_limit_refusals_total", limit="room"): 1,
    }
    assert deltas(before, after, expected) == expected
    ended = [line for line in log.splitlines() if "connection ended:" in line]
    assert len(ended) == 5
    assert not [line for line in ended if "alice" in line or "bob" in line or room in line]
    assert sum("transport=websocket topic=room" in line and "code=4401" in line for line in ended) == 1


@pytest.mark.slow
async def test_each_process_of_a_cluster_is_scraped_and_the_totals_add_up(tmp_path):
    room = f"metrics-{uuid.uuid4().hex[:8]}"
    a, b = start_cluster(tmp_path, CLUSTER_REDIS_URL)
    try:
        before = [scrape(a.url), scrape(b.url)]
        async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
            sockets = []
            for server, client in ((a, alice), (b, bob)):
                socket = await websockets.connect(
                    f"{server.ws_url}/ws/rooms/{room}/",
                    additional_headers={"Cookie": cookie_header(client), "Origin": server.url},
                )
                await read_until(socket, "presence")
                sockets.append(socket)
            response = await alice.post(
                f"/api/rooms/{room}/messages",
                json={"text": "across"},
                headers={"X-CSRFToken": alice.cookies["csrftoken"]},
            )
            assert response.status_code == 201
            for socket in sockets:
                assert (await read_until(socket, "message"))["text"] == "across"
                await socket.close()

        def total(samples: list[Samples], name: str, **labels: str) -> float:
            return sum(value(s, name, **labels) for s in samples)

        def settled(samples: list[Samples]) -> bool:
            return (
                total(samples, "realtime_connections_closed_total", code="1000", **WS_ROOM)
                - total(before, "realtime_connections_closed_total", code="1000", **WS_ROOM)
                >= 2
            )

        after = scrape_until([a.url, b.url], settled)
    finally:
        stop_cluster((a, b), CLUSTER_REDIS_URL)

    def moved(name: str, **labels: str) -> list[float]:
        return [value(after[i], name, **labels) - value(before[i], name, **labels) for i in (0, 1)]

    # Each process counts its own: one socket each, the publish on the process that took the post,
    # one delivery and one latency sample on each process the relay handed the event to.
    assert moved("realtime_connections_opened_total", **WS_ROOM) == [1, 1]
    assert moved("realtime_connections_closed_total", code="1000", **WS_ROOM) == [1, 1]
    assert moved("realtime_connections_open", **WS_ROOM) == [0, 0]
    assert moved("realtime_events_published_total", topic="room") == [1, 0]
    assert moved("realtime_deliveries_total") == [1, 1]
    assert moved("realtime_publish_latency_seconds_count") == [1, 1]
    # Both processes expose their own process facts.
    assert all(value(s, "process_start_time_seconds") > 0 for s in after)
