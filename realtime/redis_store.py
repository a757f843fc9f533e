"""The core's Redis client: one per event loop, and the Lua scripts that modules run on it.

With ``REDIS_URL`` the limits and presence are shared by every server
process through Redis (:func:`shared`). Each check-and-record is a
:class:`Script` that Redis runs atomically, one round trip, declared by the
module whose concept it is (realtime.ratelimit, realtime.slots,
realtime.registry). Times come from Redis (``TIME``), so processes on hosts
whose clocks disagree still share one window.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript

from .process import process

# Redis connections per process and event loop: a connect storm waits for one
# (POOL_TIMEOUT) instead of failing, as the channel layer does (realtime.relay).
MAX_CONNECTIONS = 50
POOL_TIMEOUT = 5.0
SOCKET_TIMEOUT = 2.0  # fail fast while Redis is down: every caller degrades gracefully


def shared() -> bool:
    """Return whether limits and presence are shared through Redis (``REDIS_URL``)."""
    return bool(settings.REDIS_URL)


@dataclass(eq=False)
class Client:
    """One event loop's Redis client, and the scripts registered on it so far."""

    url: str
    redis: Redis
    scripts: dict[Script, AsyncScript] = field(default_factory=dict)


# redis.asyncio's connections belong to the loop that opened them: one client per loop, kept.
process.declare("redis_clients", weakref.WeakKeyDictionary)


def client() -> Client:
    """Return this event loop's client for ``REDIS_URL``."""
    loop = asyncio.get_running_loop()
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = process.redis_clients
    found = clients.get(loop)
    url = settings.REDIS_URL
    if found is None or found.url != url:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
        )
        found = clients[loop] = Client(url, Redis(connection_pool=pool))
    return found


async def close() -> None:
    """Close this event loop's client (tests; a server keeps its client for its life)."""
    found = process.redis_clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.redis.aclose()
        await found.redis.connection_pool.disconnect()


class Script:
    """A Lua script Redis runs atomically, declared once by the module that uses it.

    Called as ``await script(keys=[...], args=[...])`` on this event loop's
    client: one round trip (``EVALSHA``, loading the script the first time).
    """

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """Run the script on this event loop's client; raises REDIS_ERRORS while Redis is down."""
        found = client()
        runner = found.scripts.get(self)
        if runner is None:  # first use on this client: hashing only, no round trip
            runner = found.scripts[self] = found.redis.register_script(self.source)
        return runner(keys=keys, args=args)
