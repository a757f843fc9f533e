"""Prometheus metrics of the realtime core: what an operator needs to see a process at a glance.

The series and their label values are declared in realtime.metric_series;
this module is what the code calls to record, and how an app declares its
own (:func:`counter`, :func:`register_error_codes`). ``GET /metrics``
(realtime.metrics_view) exposes them, one endpoint per server process
(docs/operations.md says why not the multiprocess mode, and how to scrape
several processes). Gauges read at scrape time are set by the module that
holds what they measure (``DB_QUEUE_DEPTH.set_function`` in realtime.db).

The hot paths pay little: labelled children are bound once and kept in
dicts (no ``labels()`` call per message), a publish costs one counter
increment, a ``group_send`` one increment and one histogram sample
whatever the number of recipients, and a connection a few increments when
it opens and ends. The other helpers run on rare paths (refusals, errors,
failures). This module imports nothing from Django, nor from the rest of
the core: the layers import it.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter

from . import metric_series as series
from .metric_series import CLIENT_GONE, CONNECTION_SLOTS, DB_QUEUE_DEPTH, NO_IDENTITY, OTHER, SENT_AT

__all__ = ["CLIENT_GONE", "CONNECTION_SLOTS", "DB_QUEUE_DEPTH", "NO_IDENTITY", "OTHER", "SENT_AT"]

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
            self.open = series.CONNECTIONS_OPEN.labels(transport, topic)
            self.opened = series.CONNECTIONS_OPENED.labels(transport, topic)
            self.duration = series.CONNECTION_DURATION.labels(transport, topic)
        self.closed: dict[str, Any] = {}  # close label -> child, filled on first use

    def ended(self, label: str) -> Any:
        """Return the child counting connections that ended with ``label``."""
        if not enabled:
            return UNRECORDED
        child = self.closed.get(label)
        if child is None:
            child = self.closed[label] = series.CONNECTIONS_CLOSED.labels(self.transport, self.topic, label)
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
    return series.CLOSE_LABELS.get(code, OTHER)


def prepare(topic_kinds) -> None:
    """Create the usual labelled series at zero (each topic kind, transport, close code, reason).

    A series that appears only when it first moves hides that first move from
    ``rate()`` and ``increase()``, and leaves panels empty: /metrics calls this
    once, when the topics are known.
    """
    kinds = list(topic_kinds)
    for transport in series.TRANSPORTS:
        for reason in series.REFUSAL_REASONS:
            _child(series.CONNECTIONS_REFUSED, transport, reason)
        for kind in kinds:
            bound = for_connection(transport, kind)
            for label in {*series.CLOSE_LABELS.values(), OTHER}:
                bound.ended(label)
    for kind in [*kinds, "user"]:
        for metric in (series.EVENTS_PUBLISHED, series.CATCH_UP_EVENTS, series.DUPLICATES_SKIPPED):
            _topic_child(metric, kind)
    for operation in series.LAYER_OPERATIONS:
        _child(series.LAYER_ERRORS, operation)
    for transport in ("http", "websocket"):
        _child(series.DATABASE_UNAVAILABLE, transport)


# -- the helpers the code calls ------------------------------------------------


def connection_opened(transport: str, topic_kind: str) -> ConnectionMetrics:
    """Count an admitted connection (realtime.connection); return its bound metrics."""
    bound = for_connection(transport, topic_kind)
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
    _child(series.CONNECTIONS_REFUSED, transport, reason if reason in series.REFUSAL_REASONS else OTHER).inc()


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
    child = _by_topic.get((series.EVENTS_PUBLISHED, kind))
    if child is None:
        child = _topic_child(series.EVENTS_PUBLISHED, kind)
    child.inc()


def delivered(recipients: int, sent_at: float) -> None:
    """Count one group_send's deliveries and sample its publish-to-socket latency (once per group_send)."""
    if recipients:
        series.DELIVERIES.inc(recipients)
        series.PUBLISH_LATENCY.observe(max(0.0, time.time() - sent_at))


def caught_up(kind: str, count: int) -> None:
    """Count ``count`` catch-up events sent to one new connection (once per connection)."""
    if count:
        _topic_child(series.CATCH_UP_EVENTS, kind).inc(count)


def duplicate_skipped(kind: str) -> None:
    """Count one live event skipped as already caught up (only when it is skipped)."""
    _topic_child(series.DUPLICATES_SKIPPED, kind).inc()


def overflowed() -> None:
    """Count a consumer that fell behind its queue's capacity (realtime.layers, once per episode)."""
    series.OVERFLOWS.inc()


def client_error(transport: str, code: str) -> None:
    """Count an error answered to a client: ``websocket`` (error event) or ``http`` (JSON error)."""
    transport = transport if transport in series.ERROR_TRANSPORTS else OTHER
    _child(series.CLIENT_ERRORS, transport, code if code in series.ERROR_CODES else OTHER).inc()


def rate_limited(key: str) -> None:
    """Count a hit a rate limit refused; labelled by the key's kind, never the key itself.

    ``"typing:board.main"`` counts as ``typing``, ``"board.main"`` as ``board``,
    ``"board-create"`` as itself; past :data:`series.MAX_RATE_LIMIT_LABELS` distinct
    kinds, as ``other``.
    """
    kind = key.partition(":")[0] if ":" in key else key.partition(".")[0]
    if kind not in _rate_limit_labels:
        if len(_rate_limit_labels) >= series.MAX_RATE_LIMIT_LABELS:
            kind = OTHER
        else:
            _rate_limit_labels.add(kind)
    _child(series.RATE_LIMIT_REFUSALS, kind).inc()


def db_waited(seconds: float) -> None:
    """Sample how long a call waited in the DB worker's queue (realtime.db)."""
    series.DB_WAIT.observe(seconds)


def database_unavailable(transport: str = "http") -> None:
    """Count an answer refused because the database could not serve (``http`` 503, ``websocket``)."""
    _child(
        series.DATABASE_UNAVAILABLE, transport if transport in ("http", "websocket", "sse") else OTHER
    ).inc()


def layer_error(operation: str) -> None:
    """Count a failed channel-layer call (``publish``, ``receive``, ``renew``, ``refresh``)."""
    _child(series.LAYER_ERRORS, operation if operation in series.LAYER_OPERATIONS else OTHER).inc()


def relay_failed() -> None:
    """Count a failed read of the Redis relay."""
    series.RELAY_FAILURES.inc()


def relay_reconnected() -> None:
    """Count the Redis relay reaching Redis again after a failure."""
    series.RELAY_RECONNECTS.inc()


def presence_tick(seconds: float) -> None:
    """Sample the duration of one presence tick."""
    series.PRESENCE_TICK.observe(seconds)


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
