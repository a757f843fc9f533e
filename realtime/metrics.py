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

from .metric_series import (
    CATCH_UP_EVENTS,
    CLIENT_ERRORS,
    CLIENT_GONE,
    CLOSE_LABELS,
    CONNECTION_DURATION,
    CONNECTION_SLOTS,
    CONNECTIONS_CLOSED,
    CONNECTIONS_OPEN,
    CONNECTIONS_OPENED,
    CONNECTIONS_REFUSED,
    DATABASE_UNAVAILABLE,
    DB_QUEUE_DEPTH,
    DB_WAIT,
    DELIVERIES,
    DUPLICATES_SKIPPED,
    ERROR_CODES,
    ERROR_TRANSPORTS,
    EVENTS_PUBLISHED,
    LAYER_ERRORS,
    LAYER_OPERATIONS,
    MAX_RATE_LIMIT_LABELS,
    NO_IDENTITY,
    OTHER,
    OVERFLOWS,
    PRESENCE_TICK,
    PUBLISH_LATENCY,
    RATE_LIMIT_REFUSALS,
    REFUSAL_REASONS,
    RELAY_FAILURES,
    RELAY_RECONNECTS,
    SENT_AT,
    TRANSPORTS,
)

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
    """Return the label of a close code: one of 1000, 1012, 1013, 4401, 4403, client_gone, other."""
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


# -- an app's own metrics ---------------------------------------------------------


class AppCounter:
    """A counter an app declared (:func:`counter`): records nothing while metrics are off.

    Apps hold this object, so it checks ``enabled`` itself instead of being
    rebound by :func:`disable`.
    """

    __slots__ = ("_metric",)

    def __init__(self, metric: Counter) -> None:
        self._metric = metric

    def inc(self, amount: float = 1, *labels: str) -> None:
        """Add ``amount`` (to the child of ``labels``, for a labelled counter)."""
        if amount and enabled:
            (self._metric.labels(*labels) if labels else self._metric).inc(amount)


def counter(name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> AppCounter:
    """Declare an app's own counter (``<app>_..._total``), exposed at /metrics with the core's."""
    return AppCounter(Counter(name, documentation, list(labelnames)))


def register_error_codes(*codes: str) -> None:
    """Count these client error codes of an app by name (any other code is counted as ``other``)."""
    ERROR_CODES.update(codes)


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
