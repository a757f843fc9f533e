"""The Prometheus series of the realtime core, and the values their labels may take.

Every metric lives in prometheus_client's default registry, next to its
process and platform collectors (``process_*``, ``python_*``). Labels are
bounded: ``transport`` is ``websocket`` or ``sse`` (``http`` for client
errors and 503s), ``topic`` a ``Topic.kind`` (one per Topic subclass, never
a key or a user), ``code`` a close code from :data:`CLOSE_LABELS`,
``reason`` one of :data:`REFUSAL_REASONS`, an error code one of
:data:`ERROR_CODES`; anything else is counted as ``other``. The code records
through realtime.metrics, never here.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The key of a delivery message that carries its publish time (time.time(), a float):
# stamped by realtime.events, read once per group_send by realtime.layers.
SENT_AT = "sent_at"

TRANSPORTS = ("websocket", "sse")

# Close codes as labels. A WebSocket's code is the one the server closed it with,
# or the client's; an SSE stream's is the code of the notice that ended it (4401,
# 4403, 1012), 1013 when it fell behind, or "client_gone".
CLIENT_GONE = "client_gone"  # the client vanished: a send failed, it closed 1001/1005/1006, a stream was cut
OTHER = "other"
CLOSE_LABELS: dict[Any, str] = {
    1000: "1000",
    # The server failed the connection for what the client sent: a protocol
    # error, a text message that is not UTF-8, a message over the size limit.
    1002: "1002",
    1007: "1007",
    1009: "1009",
    1012: "1012",
    1011: "1011",  # the server failed the connection (the database is unavailable)
    1013: "1013",
    4401: "4401",
    4403: "4403",
    1001: CLIENT_GONE,  # going away (a tab closed, a page left)
    1005: CLIENT_GONE,  # no status
    1006: CLIENT_GONE,  # closed without a close frame
    CLIENT_GONE: CLIENT_GONE,
}

# Why a connection was refused before it started.
NO_IDENTITY = "no_identity"  # no session or token (the topic's rule, anonymous)
REFUSAL_REASONS = frozenset(
    {
        NO_IDENTITY,
        "forbidden",  # the topic's rule refused an identified user
        "origin",  # a cross-site Origin on a WebSocket handshake
        "middleware",  # a middleware answered instead of the consumer (LoginRequiredMiddleware...)
        "not_found",  # no WebSocket route
        "bad_request",  # a query string Django refuses, a bad Last-Event-ID, a method other than GET
        "unavailable",  # the database was down (WebSocket handshake)
        "limit",  # REALTIME_MAX_CONNECTIONS_PER_USER
        "draining",  # the process is stopping (SIGTERM)
    }
)

# Error codes of the wire contract (docs/contract.md, sections 2 and 3); apps add
# their own with realtime.register_error_codes().
ERROR_CODES = set(
    {
        "bad_json",
        "unknown_type",
        "invalid",
        "too_large",
        "rate_limited",
        "binary_unsupported",
        "unauthorized",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "unavailable",
        "unsupported_media_type",
        "server_error",
    }
)
ERROR_TRANSPORTS = frozenset({"websocket", "http"})

# Operations of the channel layer whose failures are counted.
LAYER_OPERATIONS = frozenset({"publish", "receive", "renew", "refresh"})

# At most this many distinct rate-limit label values; later ones are "other".
MAX_RATE_LIMIT_LABELS = 20

# No ``*_created`` series next to each counter and histogram: half the scrape, of no use to
# rate() (for the whole process: an app's own metrics too).
disable_created_metrics()

# -- the metrics -------------------------------------------------------------

CONNECTIONS_OPEN = Gauge(
    "realtime_connections_open",
    "Live WebSocket and SSE connections of this process (admitted, not yet released).",
    ["transport", "topic"],
)
CONNECTIONS_OPENED = Counter(
    "realtime_connections_opened_total",
    "Connections admitted (handshakes and streams accepted).",
    ["transport", "topic"],
)
CONNECTIONS_REFUSED = Counter(
    "realtime_connections_refused_total",
    "WebSocket handshakes and SSE streams refused before they started, by reason.",
    ["transport", "reason"],
)
CONNECTIONS_CLOSED = Counter(
    "realtime_connections_closed_total",
    "Connections ended, by close code "
    "(1000, 1002, 1007, 1009, 1011, 1012, 1013, 4401, 4403, client_gone, other).",
    ["transport", "topic", "code"],
)
CONNECTION_DURATION = Histogram(
    "realtime_connection_duration_seconds",
    "How long connections lived, from admission to release.",
    ["transport", "topic"],
    buckets=(1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 24 * 3600, float("inf")),
)
EVENTS_PUBLISHED = Counter(
    "realtime_events_published_total",
    "Events published by this process, by topic kind ('user' for publish_to_user).",
    ["topic"],
)
DELIVERIES = Counter(
    "realtime_deliveries_total",
    "Published events handed to this process's connections (one per recipient).",
)
PUBLISH_LATENCY = Histogram(
    "realtime_publish_latency_seconds",
    "From publish() to the end of the fan-out to this process's sockets, one sample per group_send.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf")),
)
CATCH_UP_EVENTS = Counter(
    "realtime_catch_up_events_total",
    "Events sent as catch-up on connecting (a replay, a snapshot).",
    ["topic"],
)
DUPLICATES_SKIPPED = Counter(
    "realtime_duplicate_events_skipped_total",
    "Live events a connection skipped because its catch-up already sent them.",
    ["topic"],
)
OVERFLOWS = Counter(
    "realtime_slow_consumer_overflows_total",
    "Connections that fell behind: queue past capacity, or oldest event past the lag bound (closed 1013).",
)
CLIENT_ERRORS = Counter(
    "realtime_client_errors_total",
    "Error events (WebSocket) and JSON errors of the API (http) answered to clients, by error code.",
    ["transport", "code"],
)
RATE_LIMIT_REFUSALS = Counter(
    "realtime_rate_limit_refusals_total",
    "Hits refused by a rate limit, by what was limited (the key's kind).",
    ["limit"],
)
DB_QUEUE_DEPTH = Gauge(
    "realtime_db_queue_depth", "Calls waiting for the realtime DB worker thread (realtime.db)."
)
DB_WAIT = Histogram(
    "realtime_db_wait_seconds",
    "How long a call waited in the DB worker's queue before it ran.",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf")),
)
DATABASE_UNAVAILABLE = Counter(
    "realtime_database_unavailable_total",
    "Answers refused because the database was down or its pool exhausted (503; 403 on a handshake).",
    ["transport"],
)
LAYER_ERRORS = Counter(
    "realtime_channel_layer_errors_total",
    "Channel-layer (Redis) calls that failed, by operation.",
    ["operation"],
)
RELAY_FAILURES = Counter(
    "realtime_redis_relay_failures_total",
    "Failed reads of the Redis relay; each closes this process's connections with 1013.",
)
RELAY_RECONNECTS = Counter(
    "realtime_redis_relay_reconnects_total",
    "Times the Redis relay reached Redis again after failing.",
)
PRESENCE_TICK = Histogram(
    "realtime_presence_tick_seconds",
    "Duration of one presence tick (snapshot written, others' snapshots read).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf")),
)

CONNECTION_SLOTS = Gauge(
    "realtime_connection_slots",
    "Per-user connection slots this process holds (REALTIME_MAX_CONNECTIONS_PER_USER); "
    "equals the sum of realtime_connections_open unless a slot leaked.",
)
