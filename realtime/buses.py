"""Which bus the processes share (``REALTIME_BUS``): in-process memory, PostgreSQL or Redis.

The bus decides what several server processes share: events, and the
state that limits, presence and exclusive jobs keep across processes
(realtime.stores). Unset, it is ``redis`` when ``REDIS_URL`` is set, else
``memory`` (one server process). ``postgres`` needs the default database on
PostgreSQL.
"""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Bus = Literal["memory", "postgres", "redis"]
BUSES: tuple[Bus, ...] = ("memory", "postgres", "redis")


def selected() -> Bus:
    """Return the bus in use: ``REALTIME_BUS``, else ``redis`` with ``REDIS_URL``, else ``memory``."""
    bus = getattr(settings, "REALTIME_BUS", "")
    if not bus:
        return "redis" if settings.REDIS_URL else "memory"
    if bus not in BUSES:
        raise ImproperlyConfigured(f"REALTIME_BUS={bus!r}: expected one of {', '.join(BUSES)}.")
    return bus


def check() -> None:
    """Raise ImproperlyConfigured when the selected bus cannot work with these settings (at start)."""
    bus = selected()
    if bus == "redis" and not settings.REDIS_URL:
        raise ImproperlyConfigured("REALTIME_BUS=redis needs REDIS_URL.")
    if bus == "postgres":
        engine = settings.DATABASES["default"]["ENGINE"]
        if engine != "django.db.backends.postgresql":
            raise ImproperlyConfigured(
                "REALTIME_BUS=postgres needs DATABASE_URL on PostgreSQL: the processes share their "
                f"state through the default database, and it is {engine.rsplit('.', 1)[-1]}."
            )
