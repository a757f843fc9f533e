"""Checks of the outside services the settings select (Redis), and their error types."""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# What a Redis-backed channel layer or cache raises while Redis is down.
REDIS_ERRORS = (OSError, redis.RedisError)

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

    The in-process layer lives inside the server: a send from another process
    (a management command, a worker) would reach nobody, so say so instead
    of pretending. ``what`` names the caller in the message.
    """
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        raise ImproperlyConfigured(
            f"{what} needs REDIS_URL: the in-process channel layer cannot "
            "reach the running server from another process."
        )
    require_redis()
