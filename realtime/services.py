"""Checks of the outside services the settings select (Redis), and their error types."""

from __future__ import annotations

import psycopg
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# What a Redis-backed channel layer or cache raises while Redis is down.
REDIS_ERRORS = (OSError, redis.RedisError)
# What a channel layer raises while its bus is down (Redis, or PostgreSQL for the postgres bus).
LAYER_ERRORS = (*REDIS_ERRORS, psycopg.Error)

CONNECT_TIMEOUT = 3.0


def require_redis() -> None:
    """Fail fast with a clear message when REDIS_URL is set but Redis does not answer."""
    url = settings.REDIS_URL
    if not url:
        return
    try:
        redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        ).ping()
    except redis.RedisError as exc:
        raise ImproperlyConfigured(f"REDIS_URL={url} is set but Redis is not reachable: {exc}") from exc


def require_shared_layer(what: str) -> None:
    """Raise ImproperlyConfigured unless a publish from this process reaches the server's clients.

    Every bus reaches them: the Redis relay, or the event table that the
    servers read (realtime.bus), so this checks only that the bus answers.
    ``what`` names the caller in the message.
    """
    if settings.REALTIME_BUS == "redis":
        require_redis()
        return
    from django.db import DatabaseError

    from .models import BusEvent

    try:
        BusEvent.objects.exists()
    except DatabaseError as exc:
        raise ImproperlyConfigured(
            f"{what} publishes through the database's event table, which is not usable "
            f"(run manage.py migrate?): {exc}"
        ) from exc
