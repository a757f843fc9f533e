"""Metrics (realtime.metrics), GET /metrics, the connection log line and JSON logs (docs/operations.md).

In-process tests read prometheus_client's registry before and after; the
tests marked slow script a session against a real Daphne and scrape its
/metrics, and scrape both processes of a cluster over Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import websockets
from channels.layers import get_channel_layer
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import realtime
from chat import events as chat_events
from chat.models import Message, Room
from chat.topic import RoomTopic
from project.asgi import application
from realtime import events, metrics
from realtime.layers import OVERFLOW
from realtime.logfilters import JsonFormatter, RedactCredentials
from realtime.metrics_view import address_allowed
from tests.asgi import joined, make_user, session_cookie, ws
from tests.chat.test_cluster import start_cluster, stop_cluster
from tests.chat.test_consumers import announce, outputs_until_close, stalled_socket
from tests.conftest import ROOT, running_server
from tests.faults import CuttableProxy
from tests.realtime.test_redis_layer import make_layer, receive, scratch_redis, stop  # noqa: F401
from tests.sse_client import login, sse

ROOM = "/ws/rooms/general/"
WS_ROOM = {"transport": "websocket", "topic": "room"}
SSE_ROOM = {"transport": "sse", "topic": "room"}

Samples = dict[tuple[str, frozenset], float]


# -- reading metrics -------------------------------------------------------------

# An app's own counters, declared as an app would (realtime.counter).
APP_BYTES = realtime.counter("echo_test_bytes_total", "Bytes an app counted (tests).")
APP_DONE = realtime.counter("echo_test_done_total", "Things an app finished (tests).")


def local_samples() -> Samples:
    """Return every sample of this process's registry."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }


def parse(text: str) -> Samples:
    """Return every sample of a /metrics answer."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def deltas(before: Samples, after: Samples, expected: dict[tuple, float]) -> dict[tuple, float]:
    """Return, for each ``(name, labels)`` of ``expected``, how much it moved from ``before`` to ``after``."""
    return {
        (name, labels): value(after, name, **dict(labels)) - value(before, name, **dict(labels))
        for name, labels in expected
    }


def key(name: str, **labels: str) -> tuple[str, tuple]:
    return name, tuple(sorted(labels.items()))


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def scrape_until(urls: list[str], ready, timeout: float = 10) -> list[Samples]:
    """Scrape ``urls`` until ``ready(samples_of_each)`` holds (a release comes just after a close)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = [scrape(url) for url in urls]
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


# -- GET /metrics: who may read it ---------------------------------------------------


async def get_metrics(client: tuple[str, int] = ("127.0.0.1", 1234), **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=application, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/metrics", headers=headers)


@pytest.mark.django_db
async def test_metrics_are_served_to_loopback_in_the_prometheus_text_format():
    for client in (("127.0.0.1", 1234), ("::1", 1234)):
        response = await get_metrics(client)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        names = {family.name for family in text_string_to_metric_families(response.text)}
        # The core's metrics, and the process facts of prometheus_client's default collectors.
        assert {"realtime_connections_open", "realtime_publish_latency_seconds"} <= names
        assert "process_cpu_seconds" in names
        assert "python_gc_objects_collected" in names


@pytest.mark.django_db
async def test_openmetrics_is_served_when_asked_for():
    response = await get_metrics(Accept="application/openmetrics-text; version=1.0.0")
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.django_db
async def test_metrics_are_a_json_404_for_any_other_address():
    response = await get_metrics(("203.0.113.5", 1234))
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No such endpoint."}
    assert "realtime_" not in response.text


@pytest.mark.django_db
async def test_the_setting_names_the_allowed_addresses_and_networks():
    with override_settings(REALTIME_METRICS_ALLOWED_IPS="10.0.0.7, 203.0.113.0/24"):
        assert (await get_metrics(("203.0.113.5", 1234))).status_code == 200
        assert (await get_metrics(("10.0.0.7", 1234))).status_code == 200
        # Loopback is allowed only while the setting lists it.
        assert (await get_metrics(("127.0.0.1", 1234))).status_code == 404
        assert (await get_metrics(("198.51.100.1", 1234))).status_code == 404


def test_address_checks():
    with override_settings(REALTIME_METRICS_ALLOWED_IPS="127.0.0.1,::1,not-an-ip,fd00::/8"):
        assert address_allowed("127.0.0.1")
        assert address_allowed("::ffff:127.0.0.1")  # a dual-stack socket's view of IPv4 loopback
        assert address_allowed("fd00::5")
        assert not address_allowed("127.0.0.2")
        assert not address_allowed("")
        assert not address_allowed(None)
        assert not address_allowed("localhost")
    with override_settings(REALTIME_METRICS_ALLOWED_IPS=""):
        assert not address_allowed("127.0.0.1")


# -- what a connection moves, in-process ----------------------------------------------


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


def test_the_helpers_of_other_modules_keep_their_labels_bounded():
    before = local_samples()
    for status, origin in ((403, True), (302, False), (404, False), (400, False), (503, False)):
        metrics.handshake_refused(status, origin=origin)
    for key_ in ("room.lobby", "typing:room.lobby", "room-create", "room.other"):
        metrics.rate_limited(key_)
    metrics.client_error("websocket", "no such code")
    metrics.database_unavailable("http")
    metrics.database_unavailable("websocket")
    APP_BYTES.inc(1000)
    APP_DONE.inc()
    metrics.db_waited(0.002)
    metrics.presence_tick(0.01)
    after = local_samples()
    refused = {"transport": "websocket"}
    expected = {
        key("realtime_connections_refused_total", reason="origin", **refused): 1,
        key("realtime_connections_refused_total", reason="middleware", **refused): 1,
        key("realtime_connections_refused_total", reason="not_found", **refused): 1,
        key("realtime_connections_refused_total", reason="bad_request", **refused): 1,
        key("realtime_connections_refused_total", reason="unavailable", **refused): 1,
        key("realtime_rate_limit_refusals_total", limit="room"): 2,
        key("realtime_rate_limit_refusals_total", limit="typing"): 1,
        key("realtime_rate_limit_refusals_total", limit="room-create"): 1,
        key("realtime_client_errors_total", transport="websocket", code="other"): 1,
        key("realtime_database_unavailable_total", transport="http"): 1,
        key("realtime_database_unavailable_total", transport="websocket"): 1,
        key("echo_test_bytes_total"): 1000,
        key("echo_test_done_total"): 1,
        key("realtime_db_wait_seconds_count"): 1,
        key("realtime_presence_tick_seconds_count"): 1,
    }
    assert deltas(before, after, expected) == expected
    assert metrics.close_label(1001) == metrics.close_label(1006) == "client_gone"
    assert metrics.close_label(1011) == "1011"
    assert metrics.close_label(4000) == metrics.close_label(None) == "other"
    # Protocol errors, invalid UTF-8 and oversized messages, by their code.
    assert [metrics.close_label(code) for code in (1002, 1007, 1009)] == ["1002", "1007", "1009"]
    assert value(after, "realtime_db_queue_depth") == 0


@pytest.mark.usefixtures("scratch_redis")
async def test_redis_relay_failures_and_reconnects_are_counted():
    proxy = CuttableProxy(6379)
    proxy.start()
    layer = make_layer(f"redis://127.0.0.1:{proxy.port}/10")
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        before = local_samples()
        proxy.set_cut(True)
        # The relay's read fails: it closes its local connections (1013) and counts the failure.
        assert await receive(layer, channel, timeout=10) == {"type": OVERFLOW}
        assert value(local_samples(), "realtime_redis_relay_failures_total") > value(
            before, "realtime_redis_relay_failures_total"
        )
        proxy.set_cut(False)
        deadline = time.monotonic() + 10
        while value(local_samples(), "realtime_redis_relay_reconnects_total") == value(
            before, "realtime_redis_relay_reconnects_total"
        ):
            assert time.monotonic() < deadline, "the relay's reconnect was not counted"
            await asyncio.sleep(0.1)
        reconnects = value(local_samples(), "realtime_redis_relay_reconnects_total")
        assert reconnects == value(before, "realtime_redis_relay_reconnects_total") + 1
    finally:
        await stop(layer)
        proxy.stop()


# -- the dashboard and the docs name only metrics that exist, and every one of them ---------


def exposed_names() -> set[str]:
    """Return every sample name this process exposes, or will once a labelled metric is used."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    names = {name for name, _ in local_samples()}
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def core_metric_names() -> set[str]:
    """Return the core's metric families, as Prometheus names them (counters with _total)."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("realtime_"):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_the_grafana_dashboard_is_a_dashboard_of_metrics_that_exist():
    dashboard = json.loads((ROOT / "docs/grafana/realtime.json").read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    referenced = {name for expr in exprs for name in re.findall(r"\b((?:realtime|process)_[a-z_]+)\b", expr)}
    assert referenced - exposed_names() == set()
    # The panels: connections, refusals, ends by code, latency p50/p99, events, DB, 503s, Redis.
    for needed in (
        "realtime_connections_open",
        "realtime_connections_refused_total",
        "realtime_connections_closed_total",
        "realtime_publish_latency_seconds_bucket",
        "realtime_events_published_total",
        "realtime_db_queue_depth",
        "realtime_database_unavailable_total",
        "realtime_redis_relay_failures_total",
    ):
        assert needed in referenced, needed
    assert any("histogram_quantile(0.99" in e and "publish_latency" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e and "publish_latency" in e for e in exprs)


def test_operations_md_documents_every_metric():
    text = (ROOT / "docs/operations.md").read_text()
    assert {name for name in core_metric_names() if f"`{name}`" not in text} == set()


# -- the log line of a connection's end, and JSON logs ------------------------------------


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


def test_json_formatter_writes_one_redacted_object_per_line():
    record = logging.LogRecord(
        "realtime.connections",
        logging.INFO,
        __file__,
        1,
        "GET %s done",
        ("/ws/?access_token=abc123",),
        None,
    )
    record.transport = "websocket"
    record.duration_s = 1.5
    record.header = "Authorization: Bearer abc123"
    RedactCredentials().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line and "abc123" not in line
    data = json.loads(line)
    assert data["message"] == "GET /ws/?access_token=[redacted] done"
    assert (data["level"], data["logger"], data["transport"], data["duration_s"]) == (
        "INFO",
        "realtime.connections",
        "websocket",
        1.5,
    )
    assert data["header"] == "Authorization: Bearer [redacted]"
    assert data["time"].endswith("Z")


def test_json_formatter_redacts_tracebacks():
    try:
        raise ValueError("bad url /ws/?access_token=abc123")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert "abc123" not in data["exc_info"] and "ValueError" in data["exc_info"]


def test_django_log_json_switches_the_console_to_json_lines():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('realtime.connections').info('connection ended: code=%s', '1000', "
        "extra={'code': '1000'})"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_LOG_JSON": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "connection ended" in line]
    data = json.loads(line)
    assert (data["logger"], data["message"], data["code"]) == (
        "realtime.connections",
        "connection ended: code=1000",
        "1000",
    )


METRICS_OFF_SCRIPT = """
import django, json
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from prometheus_client import REGISTRY
import realtime
from realtime import events, metrics

metrics.published("room")
metrics.delivered(5, 0.0)
metrics.client_error("websocket", "bad_json")
app_counter = realtime.counter("echo_test_bytes_total", "An app's counter.")
app_counter.inc(1000)
bound = metrics.connection_opened("websocket", "room")
label = metrics.connection_closed(bound, 1000, 3.0)
names = [
    "realtime_events_published_total", "realtime_deliveries_total", "realtime_client_errors_total",
    "echo_test_bytes_total",
    "realtime_connections_opened_total", "realtime_connections_closed_total",
    "realtime_publish_latency_seconds_count", "realtime_connection_duration_seconds_count",
]
recorded = {
    sample.name: sample.value
    for family in REGISTRY.collect()
    for sample in family.samples
    if sample.name in names and sample.value
}
print(json.dumps({
    "enabled": metrics.enabled,
    "recorded": recorded,
    "label": label,
    "stamped": metrics.SENT_AT in events._delivery({"type": "x"}),
    "scrape": (setup_test_environment(), Client().get("/metrics").status_code)[1],
}))
"""


def test_realtime_metrics_off_records_nothing_and_hides_the_endpoint():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "REALTIME_METRICS": "0"}
    result = subprocess.run(
        [sys.executable, "-c", METRICS_OFF_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "enabled": False,
        "recorded": {},
        "label": "1000",
        "stamped": False,
        "scrape": 404,
    }


# -- a scripted session against a real server -------------------------------------------


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


# -- several processes over Redis ---------------------------------------------------------

CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/15"


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
