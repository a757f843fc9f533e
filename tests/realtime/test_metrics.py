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

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import realtime
import realtime.asgi
from project.asgi import application
from realtime import metrics
from realtime.layers import OVERFLOW
from realtime.logfilters import JsonFormatter, RedactCredentials
from realtime.metrics_view import address_allowed
from tests.asgi import joined, make_user
from tests.conftest import ROOT
from tests.faults import CuttableProxy
from tests.realtime.echo import LOG
from tests.realtime.test_redis_layer import make_layer, receive, scratch_redis, stop  # noqa: F401

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
# Through the echo topic (tests/realtime/echo.py); through the chat's rooms: tests/chat/test_metrics.py.

WS_ECHO = {"transport": "websocket", "topic": "echo"}


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_session_on_any_topic_moves_each_counter_by_exactly_one():
    LOG.clear()
    app = realtime.asgi.application(get_asgi_application(), "tests.realtime.echo_routes")
    alice = await make_user("alice")
    before = local_samples()
    async with joined("/ws/echo/metrics/", user=alice, app=app) as a:
        during = local_samples()
        for name, labels in (("realtime_connections_open", WS_ECHO), ("realtime_connection_slots", {})):
            assert value(during, name, **labels) == value(before, name, **labels) + 1
        await a.send_to(text_data="not json")
        assert (await a.receive_json_from())["code"] == "bad_json"
        await a.send_json_to({"type": "say", "text": "hi"})
        assert (await a.receive_json_from())["type"] == "said"
    after = local_samples()
    expected = {
        key("realtime_connections_opened_total", **WS_ECHO): 1,
        key("realtime_connections_closed_total", code="1000", **WS_ECHO): 1,
        key("realtime_connection_duration_seconds_count", **WS_ECHO): 1,
        key("realtime_connections_open", **WS_ECHO): 0,
        key("realtime_connection_slots"): 0,
        key("realtime_client_errors_total", transport="websocket", code="bad_json"): 1,
        key("realtime_events_published_total", topic="echo"): 1,
        key("realtime_deliveries_total"): 1,
        key("realtime_publish_latency_seconds_count"): 1,
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
