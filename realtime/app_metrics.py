"""An app's own metrics: counters it declares and client error codes it names (the public API).

An app declares them once, at import (``realtime.counter(...)``,
``realtime.register_error_codes(...)``), in its own module; they are
exposed at ``/metrics`` with the core's and switched off with them
(``REALTIME_METRICS=0``).
"""

from __future__ import annotations

from prometheus_client import Counter

from . import metric_series as series
from . import metrics


class AppCounter:
    """A counter an app declared (:func:`counter`): records nothing while metrics are off.

    Apps hold this object, so it checks ``enabled`` itself instead of being
    rebound by :func:`realtime.metrics.disable`.
    """

    __slots__ = ("_metric",)

    def __init__(self, metric: Counter) -> None:
        self._metric = metric

    def inc(self, amount: float = 1, *labels: str) -> None:
        """Add ``amount`` (to the child of ``labels``, for a labelled counter)."""
        if amount and metrics.enabled:
            (self._metric.labels(*labels) if labels else self._metric).inc(amount)


def counter(name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> AppCounter:
    """Declare an app's own counter (``<app>_..._total``), exposed at /metrics with the core's."""
    return AppCounter(Counter(name, documentation, list(labelnames)))


def register_error_codes(*codes: str) -> None:
    """Count these client error codes of an app by name (any other code is counted as ``other``)."""
    series.ERROR_CODES.update(codes)
