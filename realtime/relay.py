"""Redis between processes, the in-process layer within one: one Redis membership per process per group.

channels_redis's ``RedisChannelLayer`` makes every socket a member of its
topic's group in Redis. Measured (``make bench``, the ``redis-*`` rows), that
falls short in two ways:

* Loss without a word. Past ``capacity`` pending messages for a process,
  its Lua ``group_send`` skips the message (logged at INFO), and a socket's
  receive buffer past ``capacity`` drops its oldest message
  (channels_redis ``BoundedQueue``, #212): the django/channels#1244 problem,
  in Redis. A client cannot tell; it never resumes.
* Cost per recipient: each delivery is a queue put, a wake-up and a task
  step per socket, and every Redis message carries the names of all the
  process's members of the group.

So this layer keeps sockets in a :class:`~realtime.layers.FastInMemoryChannelLayer`
(inline delivery to sinks; a reader that falls behind is closed with 1013
and resumes by replay) and joins each group in Redis once per process, with
one relay channel. ``group_send`` goes through Redis to every process's relay
channel, and the relay hands it to the local layer, in order. ``send`` to a
channel of this process stays in it; to any other channel it goes through
Redis. When Redis fails, the relay closes every local socket with 1013, so
clients resume by replay once it is back (a topic's events are stored first).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from channels_redis.core import RedisChannelLayer

from . import metrics
from .layer_channels import Sink
from .layers import OVERFLOW, FastInMemoryChannelLayer

logger = logging.getLogger(__name__)

# The key that carries a group message's group name through the relay channel.
GROUP_KEY = "__realtime_group__"
RETRY_SECONDS = 1.0
# Redis calls in flight at once from one process. redis-py 8's pool holds 100
# connections and raises MaxConnectionsError past that, which a connect storm
# reached without this bound, failing handshakes (each joins its user's and
# session's groups; measured: bench/README.md, Figures formerly quoted in code).
# The relay's own blocking receive needs one more.
MAX_REDIS_CALLS = 50
# Messages the relay takes from Redis in one call when they queued up.
RELAY_BATCH = 500


class RedisRelayChannelLayer(BaseChannelLayer):
    """Channels across processes through Redis, one relay channel per process (see the module doc)."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: Any = None,
        prefix: str = "asgi",
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: dict | None = None,
        relay_capacity: int = 100_000,
        max_lag: float = 0,
        **redis_options: Any,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.group_expiry = group_expiry
        # Per socket: the in-process layer's capacity and lag rules (close 1013 past them).
        self.local = FastInMemoryChannelLayer(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            max_lag=max_lag,
        )
        # Between processes: only relay channels receive, so their capacity is the whole backlog
        # of a process (Redis drops past it); large, and bounded in time by ``expiry``.
        self.redis = RedisChannelLayer(
            hosts=hosts,
            prefix=prefix,
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=relay_capacity,
            **redis_options,
        )
        self._relay_channel: str | None = None
        self._relay_task: asyncio.Task | None = None
        self._refresh_task: asyncio.Task | None = None
        self._joined: set[str] = set()  # groups the relay channel is a member of in Redis
        self._locks: dict[str, asyncio.Lock] = {}  # one Redis membership change per group at a time
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    # -- channels ----------------------------------------------------------

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel of this process (its name is unique across processes)."""
        await self._ensure_relay()
        return await self.local.new_channel(prefix)

    async def send(self, channel: str, message: dict) -> None:
        """Send to a channel: locally if it lives in this process, else through Redis."""
        if self.local.owns(channel):
            await self.local.send(channel, message)
        else:
            async with self._redis_slot():
                await self.redis.send(channel, message)

    async def receive(self, channel: str) -> dict:
        """Receive on a channel of this process."""
        return await self.local.receive(channel)

    def receive_nowait(self, channel: str) -> dict | None:
        """Return the channel's next message, or None (realtime.layers extension)."""
        return self.local.receive_nowait(channel)

    def attach(self, channel: str, sink: Sink) -> None:
        """Deliver to ``sink`` inline (realtime.layers extension)."""
        self.local.attach(channel, sink)

    def detach(self, channel: str) -> None:
        """Remove the channel's sink (realtime.layers extension)."""
        self.local.detach(channel)

    # -- groups ------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel of this process to the group; the first one joins the relay in Redis."""
        await self.local.group_add(group, channel)
        try:
            await self._sync_membership(group)
        except Exception:
            await self.local.group_discard(group, channel)
            raise

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove the channel from the group; the last one of this process leaves in Redis."""
        await self.local.group_discard(group, channel)
        await self._sync_membership(group)

    async def group_send(self, group: str, message: dict) -> None:
        """Send to every member of the group, in every process (one Redis message per process)."""
        self.require_valid_group_name(group)
        async with self._redis_slot():
            await self.redis.group_send(group, {**message, GROUP_KEY: group})

    async def flush(self) -> None:
        """Drop everything, in Redis and in this process."""
        await self.redis.flush()
        await self.local.flush()
        self._joined.clear()

    async def close_pools(self) -> None:
        """Close the Redis connections (channels_redis API, used by tests)."""
        await self.redis.close_pools()

    # -- the relay ---------------------------------------------------------

    async def _sync_membership(self, group: str) -> None:
        """Make the relay channel a member of ``group`` in Redis exactly while local channels are."""
        lock = self._locks.setdefault(group, asyncio.Lock())
        try:
            async with lock:
                wanted = bool(self.local.groups.get(group))
                if wanted and group not in self._joined:
                    relay = await self._ensure_relay()
                    async with self._redis_slot():
                        await self.redis.group_add(group, relay)
                    self._joined.add(group)
                elif not wanted and group in self._joined:
                    self._joined.discard(group)
                    try:
                        async with self._redis_slot():
                            await self.redis.group_discard(group, self._relay_channel)
                    except Exception as exc:  # Redis down: the membership expires with group_expiry
                        logger.debug("group_discard of %s in Redis failed: %r", group, exc)
        finally:
            if not lock.locked() and self._locks.get(group) is lock:
                del self._locks[group]

    def _redis_slot(self) -> asyncio.Semaphore:
        """Return this event loop's bound on Redis calls in flight (see MAX_REDIS_CALLS)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(MAX_REDIS_CALLS))
        return self._slots[1]

    async def _ensure_relay(self) -> str:
        """Start the relay task on this event loop (once); return the relay channel."""
        loop = asyncio.get_running_loop()
        task = self._relay_task
        if task is None or task.done() or task.get_loop() is not loop:
            if self._relay_channel is None:
                self._relay_channel = await self.redis.new_channel("relay")
            # Contexts of their own: they serve every connection of the process.
            self._relay_task = loop.create_task(
                self._relay(), name="realtime-redis-relay", context=contextvars.Context()
            )
            if self._refresh_task is not None:
                self._refresh_task.cancel()
            self._refresh_task = loop.create_task(
                self._refresh(), name="realtime-redis-refresh", context=contextvars.Context()
            )
        return self._relay_channel

    async def _relay(self) -> None:
        """Hand each group message from Redis to the local members, in order."""
        failing = False
        while True:
            if failing and await self._redis_answers():
                failing = False
                metrics.relay_reconnected()
            try:
                batch = await self._take()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failing = True
                metrics.relay_failed()
                await self._redis_failed(exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for message in batch:
                message.pop("__asgi_channel__", None)
                group = message.pop(GROUP_KEY, None)
                if group is not None:
                    await self.local.group_send(group, message)

    async def _take(self) -> list[dict]:
        """Return the relay channel's next messages from Redis, oldest first (waiting up to a few seconds).

        One call takes all that queued (up to RELAY_BATCH), instead of
        channels_redis's ``receive``: per message, four Redis calls (a cleanup
        script, a blocking pop, a backup copy and its removal) and three tasks.
        The backup only matters to a receiver cancelled mid-call; this one is
        cancelled at shutdown only, when every socket closes 1012 and resumes
        by replay.
        """
        redis, channel = self.redis, self.redis.non_local_name(self._relay_channel)
        key, connection = redis.prefix + channel, redis.connection(redis.consistent_hash(channel))
        popped = await connection.zpopmin(key, RELAY_BATCH)
        if not popped:
            first = await connection.bzpopmin(key, timeout=redis.brpop_timeout)
            if first is None:
                return []
            popped = [first[1:], *await connection.zpopmin(key, RELAY_BATCH - 1)]
        return [redis.deserialize(member) for member, _score in popped]

    async def _refresh(self) -> None:
        """Re-add the relay to its groups well within group_expiry, after which Redis forgets a member."""
        while True:
            await asyncio.sleep(self.group_expiry / 3)
            for group in list(self._joined):
                try:
                    async with self._redis_slot():
                        await self.redis.group_add(group, self._relay_channel)
                except Exception as exc:  # Redis down: the relay closes the sockets; rejoins follow
                    metrics.layer_error("refresh")
                    logger.warning("refreshing group %s in Redis failed: %r", group, exc)
                    break

    async def _redis_answers(self) -> bool:
        """Return whether the relay channel's Redis answers a PING (after a failure only)."""
        try:
            index = self.redis.consistent_hash(self._relay_channel)
            async with self._redis_slot():
                await self.redis.connection(index).ping()
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return True

    async def _redis_failed(self, exc: Exception) -> None:
        """Close every local channel's consumer (1013 for sockets), so clients resume by replay."""
        channels = list(self.local.channels)
        logger.error("Redis relay failed (%r); closing %d local connections to resume", exc, len(channels))
        # Redis may come back empty: memberships are made again as clients reconnect.
        self._joined.clear()
        for channel in channels:
            with contextlib.suppress(ChannelFull):  # that consumer is being closed for overflow already
                await self.local.send(channel, {"type": OVERFLOW})
