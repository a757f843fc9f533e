"""A channel of the in-process layer (realtime.layers): its queue, and the expiry of idle channels.

Expiry is lazy: a queue's head is checked when touched, plus one full sweep
at most every ``min(expiry, group_expiry)`` seconds that reclaims channels
nobody reads any more and memberships past ``group_expiry``.
:class:`ChannelHousekeeping` holds these steps for the layer, which keeps
``channels``, ``groups`` and ``_memberships``, and a channel's sink.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]
# Takes a message on the sender's stack and returns whether it took it. It gets
# the sender's own dict (not a copy): it must neither keep nor change it.
Sink = Callable[[Message], bool]

NO_MESSAGES = ()


class _Channel:
    """The state of one channel: its queue, capacity, waiting receivers and sink."""

    __slots__ = ("capacity", "overflowed", "queue", "sink", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # resolved once: get_capacity() matches regexes
        # (expires at, message); NO_MESSAGES while empty: even an empty deque holds a block
        # of memory, and the channel of a live socket is empty nearly always (see _pop;
        # measured: bench/README.md, What changed, and what each change bought).
        self.queue: deque[tuple[float, Message]] | tuple = NO_MESSAGES
        self.waiters: list[asyncio.Future[None]] = []  # one future per blocked receive(), oldest first
        self.overflowed = False  # group messages are dropped until the queue drains
        self.sink: Sink | None = None  # offered each message first while the queue is empty


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ChannelHousekeeping:
    """The layer's steps on one channel's queue, its groups, and the sweep of idle channels."""

    channels: dict[str, _Channel]
    groups: dict[str, dict[str, float]]
    _memberships: dict[str, set[str]]
    channel_overflows: Any
    group_expiry: float
    _next_sweep: float
    _sweep_every: float

    # -- direct delivery extension ---------------------------------------------

    def attach(self, channel: str, sink: Sink) -> None:
        """Offer the channel's messages to ``sink`` on the sender's stack while its queue is empty.

        The channel's owner (one consumer) then reads only what the sink
        declined, with :meth:`receive_nowait` or :meth:`receive`, in order.
        """
        self.require_valid_channel_name(channel)
        self._state(channel).sink = sink

    def detach(self, channel: str) -> None:
        """Remove the channel's sink; its owner is gone, so what it left queued is dropped too."""
        state = self.channels.get(channel)
        if state is not None:
            state.sink = None
            state.queue = NO_MESSAGES
            self._forget_if_idle(channel, state)

    def _wake(self, state: _Channel) -> None:
        """Wake one receiver of this loop; receivers of other loops are woken too, to re-check."""
        running = asyncio.get_running_loop()  # always called from a coroutine of the layer
        while state.waiters:
            waiter = state.waiters.pop(0)
            loop = waiter.get_loop()
            if waiter.done() or loop.is_closed():
                continue  # left behind by an old event loop (a previous test)
            if loop is running:
                waiter.set_result(None)
                return
            loop.call_soon_threadsafe(_resolve, waiter)

    def _expire_head(self, state: _Channel, now: float) -> bool:
        """Drop expired messages; the queue is in expiry order, so only its head is checked."""
        expired = False
        while state.queue and state.queue[0][0] < now:
            self._pop(state)
            expired = True
        return expired

    def _pop(self, state: _Channel) -> Message:
        """Remove and return the first queued message; give the queue's memory back once empty."""
        message = state.queue.popleft()[1]
        if not state.queue:
            state.queue = NO_MESSAGES
        return message

    def _leave(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self.groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]
                self.channel_overflows.pop(channel, None)  # bounded: socket names are never reused
                if (state := self.channels.get(channel)) is not None:
                    self._forget_if_idle(channel, state)

    def _remove_from_groups(self, channel: str) -> None:
        """Remove a channel from all its groups (used when a message on it expires)."""
        for group in list(self._memberships.get(channel, ())):
            self._leave(group, channel)

    def _maybe_sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Expire messages and memberships everywhere: the one O(N) pass, amortised over a period."""
        for channel, state in list(self.channels.items()):
            if self._expire_head(state, now):
                self._remove_from_groups(channel)
            self._forget_if_idle(channel, state)
        joined_after = now - self.group_expiry
        for group, members in list(self.groups.items()):
            for channel in [c for c, joined in members.items() if joined < joined_after]:
                self._leave(group, channel)

    def _forget_if_idle(self, channel: str, state: _Channel) -> None:
        # Like the stock layer, an empty channel takes no memory (names are per socket),
        # except while it is in a group: its next message is coming, so spare the churn.
        if (
            not (state.queue or state.waiters or state.sink or channel in self._memberships)
            and self.channels.get(channel) is state
        ):
            del self.channels[channel]
