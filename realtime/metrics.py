"""Prometheus metrics of the realtime core: what an operator needs to see a process at a glance.

Every metric lives in prometheus_client's default registry, next to its
process and platform collectors (``process_*``, ``python_*``); ``GET
/metrics`` (realtime.metrics_view) exposes it, one endpoint per server
process (docs/operations.md says why not the multiprocess mode, and how to
scrape several processes).

Labels are bounded: ``transport`` is ``websocket`` or ``sse`` (``http`` for
client errors and 503s), ``topic`` a ``Topic.kind`` (``room``, ``ticker``:
one per Topic subclass, never a room or a user), ``code`` a close code from
:data:`CLOSE_LABELS`, ``reason`` one of :data:`REFUSAL_REASONS`, an error
code one of :data:`ERROR_CODES`; anything else is counted as ``other``.

The hot paths pay little: labelled children are bound once and kept in
dicts (no ``labels()`` call per message), a publish costs one counter
increment, a ``group_send`` one increment and one histogram sample
whatever the number of recipients, and a connection a few increments when
it opens and ends. The other helpers run on rare paths (refusals, errors,
failures). This module imports nothing from Django: the layers import it.
"""

from __future__ import annotations

import time
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

# Error codes of the wire contract (docs/contract.md, sections 2, 3 and 5).
ERROR_CODES = frozenset(
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
        "conflict",
        "unsupported_version",
        "unsupported_media_type",
        "locked",
        "too_many_uploads",
        "checksum_mismatch",
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
    "Connections ended, by close code (1000, 1002, 1007, 1009, 1012, 1013, 4401, 4403, client_gone, other).",
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
    "Connections that fell behind their queue's capacity (each is closed 1013 and resumes).",
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
UPLOAD_BYTES = Counter("realtime_upload_received_bytes_total", "Upload bytes stored (tus PATCH bodies).")
UPLOADS_FINISHED = Counter("realtime_uploads_finished_total", "Uploads whose last byte was stored.")
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
    "Duration of one presence tick (snapshot, others' snapshots, diffs sent).",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf")),
)

CONNECTION_SLOTS = Gauge(
    "realtime_connection_slots",
    "Per-user connection slots this process holds (REALTIME_MAX_CONNECTIONS_PER_USER); "
    "equals the sum of realtime_connections_open unless a slot leaked.",
)


def _db_queue_depth() -> float:
    """Return the DB worker's queue length (read at scrape time: nothing on the DB path)."""
    from . import db  # imports Django: only once a scrape asks

    depth = getattr(db, "queue_depth", None)
    if depth is not None:
        return depth()
    jobs = getattr(db, "_jobs", None)
    return jobs.qsize() if jobs is not None else 0


DB_QUEUE_DEPTH.set_function(_db_queue_depth)


def _connection_slots() -> float:
    """Return the slots presence counts for this process (read at scrape time)."""
    from . import presence  # imports Django: only once a scrape asks

    return presence.local_connections()


CONNECTION_SLOTS.set_function(_connection_slots)


# -- labelled children, bound once -------------------------------------------

# False once disable() ran (settings.REALTIME_METRICS off): nothing is recorded.
enabled = True


class _Unrecorded:
    """A metric child that records nothing: what a connection holds while metrics are off."""

    def inc(self, amount: float = 1) -> None:
        """Record nothing."""

    dec = observe = inc


UNRECORDED = _Unrecorded()


class ConnectionMetrics:
    """The children of one (transport, topic kind): what a connection updates, bound once."""

    __slots__ = ("closed", "duration", "open", "opened", "topic", "transport")

    def __init__(self, transport: str, topic: str) -> None:
        self.transport, self.topic = transport, topic
        if not enabled:
            self.open = self.opened = self.duration = UNRECORDED
        else:
            self.open = CONNECTIONS_OPEN.labels(transport, topic)
            self.opened = CONNECTIONS_OPENED.labels(transport, topic)
            self.duration = CONNECTION_DURATION.labels(transport, topic)
        self.closed: dict[str, Any] = {}  # close label -> child, filled on first use

    def ended(self, label: str) -> Any:
        """Return the child counting connections that ended with ``label``."""
        if not enabled:
            return UNRECORDED
        child = self.closed.get(label)
        if child is None:
            child = self.closed[label] = CONNECTIONS_CLOSED.labels(self.transport, self.topic, label)
        return child


_connection_metrics: dict[tuple[str, str], ConnectionMetrics] = {}
_by_topic: dict[tuple[Counter, str], Any] = {}
_by_label: dict[tuple[Any, tuple[str, ...]], Any] = {}
_rate_limit_labels: set[str] = set()


def _child(metric, *values: str) -> Any:
    """Return ``metric.labels(*values)``, bound once."""
    key = (metric, values)
    child = _by_label.get(key)
    if child is None:
        child = _by_label[key] = metric.labels(*values)
    return child


def _kind(kind: str) -> str:
    return kind or "none"


def for_connection(transport: str, topic_kind: str) -> ConnectionMetrics:
    """Return the bound metrics of connections of ``transport`` to topics of ``topic_kind``."""
    key = (transport, topic_kind)
    bound = _connection_metrics.get(key)
    if bound is None:
        bound = _connection_metrics[key] = ConnectionMetrics(transport, _kind(topic_kind))
    return bound


def close_label(code: Any) -> str:
    """Return the label of a close code: one of CLOSE_LABELS' values (1000, 1007, client_gone...) or other."""
    return CLOSE_LABELS.get(code, OTHER)


def prepare(topic_kinds) -> None:
    """Create the usual labelled series at zero (each topic kind, transport, close code, reason).

    A series that appears only when it first moves hides that first move from
    ``rate()`` and ``increase()``, and leaves panels empty: /metrics calls this
    once, when the topics are known.
    """
    kinds = list(topic_kinds)
    for transport in TRANSPORTS:
        for reason in REFUSAL_REASONS:
            _child(CONNECTIONS_REFUSED, transport, reason)
        for kind in kinds:
            bound = for_connection(transport, kind)
            for label in {*CLOSE_LABELS.values(), OTHER}:
                bound.ended(label)
    for kind in [*kinds, "user"]:
        for metric in (EVENTS_PUBLISHED, CATCH_UP_EVENTS, DUPLICATES_SKIPPED):
            _topic_child(metric, kind)
    for operation in LAYER_OPERATIONS:
        _child(LAYER_ERRORS, operation)
    for transport in ("http", "websocket"):
        _child(DATABASE_UNAVAILABLE, transport)


# -- the helpers the code calls ------------------------------------------------


def connection_opened(connection) -> ConnectionMetrics:
    """Count an admitted connection (realtime.connection); return its bound metrics."""
    bound = for_connection(connection.transport, connection.topic.kind)
    bound.open.inc()
    bound.opened.inc()
    return bound


def connection_closed(bound: ConnectionMetrics, code: Any, seconds: float) -> str:
    """Count a released connection that was admitted; return its close label."""
    label = close_label(code)
    bound.open.dec()
    bound.ended(label).inc()
    bound.duration.observe(seconds)
    return label


def connection_refused(transport: str, reason: str) -> None:
    """Count a handshake or stream refused before it started (a rare path)."""
    _child(CONNECTIONS_REFUSED, transport, reason if reason in REFUSAL_REASONS else OTHER).inc()


def handshake_refused(status: int, *, origin: bool = False) -> None:
    """Count a WebSocket handshake that Django's middleware stack refused (realtime.handshake)."""
    if origin:
        reason = "origin"
    else:
        reason = {400: "bad_request", 404: "not_found", 503: "unavailable"}.get(status, "middleware")
    connection_refused("websocket", reason)


def _topic_child(metric: Counter, kind: str) -> Any:
    key = (metric, kind)
    child = _by_topic.get(key)
    if child is None:
        child = _by_topic[key] = metric.labels(_kind(kind))
    return child


def published(kind: str) -> None:
    """Count one event published to a topic of ``kind`` (once per publish, not per recipient)."""
    child = _by_topic.get((EVENTS_PUBLISHED, kind))
    if child is None:
        child = _topic_child(EVENTS_PUBLISHED, kind)
    child.inc()


def delivered(recipients: int, sent_at: float) -> None:
    """Count one group_send's deliveries and sample its publish-to-socket latency (once per group_send)."""
    if recipients:
        DELIVERIES.inc(recipients)
        PUBLISH_LATENCY.observe(max(0.0, time.time() - sent_at))


def caught_up(kind: str, count: int) -> None:
    """Count ``count`` catch-up events sent to one new connection (once per connection)."""
    if count:
        _topic_child(CATCH_UP_EVENTS, kind).inc(count)


def duplicate_skipped(kind: str) -> None:
    """Count one live event skipped as already caught up (only when it is skipped)."""
    _topic_child(DUPLICATES_SKIPPED, kind).inc()


def overflowed() -> None:
    """Count a consumer that fell behind its queue's capacity (realtime.layers, once per episode)."""
    OVERFLOWS.inc()


def client_error(transport: str, code: str) -> None:
    """Count an error answered to a client: ``websocket`` (error event) or ``http`` (JSON error)."""
    transport = transport if transport in ERROR_TRANSPORTS else OTHER
    _child(CLIENT_ERRORS, transport, code if code in ERROR_CODES else OTHER).inc()


def rate_limited(key: str) -> None:
    """Count a hit a rate limit refused; labelled by the key's kind, never the key itself.

    ``"typing:room.lobby"`` counts as ``typing``, ``"room.lobby"`` as ``room``,
    ``"room-create"`` as itself; past :data:`MAX_RATE_LIMIT_LABELS` distinct
    kinds, as ``other``.
    """
    kind = key.partition(":")[0] if ":" in key else key.partition(".")[0]
    if kind not in _rate_limit_labels:
        if len(_rate_limit_labels) >= MAX_RATE_LIMIT_LABELS:
            kind = OTHER
        else:
            _rate_limit_labels.add(kind)
    _child(RATE_LIMIT_REFUSALS, kind).inc()


# The two an app calls (realtime.count_upload_bytes, ...): apps hold these function
# objects, so they check ``enabled`` themselves instead of being rebound by disable().


def count_upload_bytes(size: int) -> None:
    """Count upload bytes stored."""
    if size and enabled:
        UPLOAD_BYTES.inc(size)


def count_upload_finished() -> None:
    """Count an upload whose last byte was stored."""
    if enabled:
        UPLOADS_FINISHED.inc()


def db_waited(seconds: float) -> None:
    """Sample how long a call waited in the DB worker's queue (realtime.db)."""
    DB_WAIT.observe(seconds)


def database_unavailable(transport: str = "http") -> None:
    """Count an answer refused because the database could not serve (``http`` 503, ``websocket``)."""
    _child(DATABASE_UNAVAILABLE, transport if transport in ("http", "websocket", "sse") else OTHER).inc()


def layer_error(operation: str) -> None:
    """Count a failed channel-layer call (``publish``, ``receive``, ``renew``, ``refresh``)."""
    _child(LAYER_ERRORS, operation if operation in LAYER_OPERATIONS else OTHER).inc()


def relay_failed() -> None:
    """Count a failed read of the Redis relay."""
    RELAY_FAILURES.inc()


def relay_reconnected() -> None:
    """Count the Redis relay reaching Redis again after a failure."""
    RELAY_RECONNECTS.inc()


def presence_tick(seconds: float) -> None:
    """Sample the duration of one presence tick."""
    PRESENCE_TICK.observe(seconds)


# -- switching them off ----------------------------------------------------------

# The helpers that record: disable() replaces each with one that does nothing.
_RECORDING = (
    "published",
    "delivered",
    "caught_up",
    "duplicate_skipped",
    "overflowed",
    "client_error",
    "rate_limited",
    "db_waited",
    "database_unavailable",
    "layer_error",
    "relay_failed",
    "relay_reconnected",
    "presence_tick",
    "connection_refused",
    "handshake_refused",
)


def _record_nothing(*args: Any, **kwargs: Any) -> None:
    """Stand in for a recording helper while metrics are off."""


def disable() -> None:
    """Record nothing from now on in this process (settings.REALTIME_METRICS off; the bench's A/B).

    The callers look the helpers up on this module at each call, so rebinding
    them here is enough; a connection's bound children become no-ops.
    """
    global enabled
    enabled = False
    namespace = globals()
    for name in _RECORDING:
        namespace[name] = _record_nothing
    _connection_metrics.clear()
