"""An in-process channel layer that scales with fan-out (drop-in for InMemoryChannelLayer).

The stock layer scans every channel and group on each receive()/group_send(),
deep-copies per recipient and starts a task per member: one event to N sockets
costs O(N^2). This one does O(1) work per delivered message. Expiry is lazy (a
queue's head is checked when touched), plus one full sweep at most every
min(expiry, group_expiry) seconds to reclaim channels nobody reads any more
(realtime.layer_channels).

A channel may also have a *sink* (:meth:`FastInMemoryChannelLayer.attach`): a
plain function that send() and group_send() call on their own stack, so a
consumer can write an event to its socket without a task, a future or a
wake-up per message. A sink that declines a message leaves it to the queue,
with the usual capacity and overflow rules.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import string
import time
from collections import Counter, deque
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from . import metrics
from .layer_channels import NO_MESSAGES, ChannelHousekeeping, Message, _Channel

logger = logging.getLogger(__name__)

# The control message put into a member channel that overflowed in group_send:
# its consumer should close (1013, try again later) and the client resume by replay.
OVERFLOW = "realtime.overflow"
_OVERFLOW_LOG = "Channel %s %s in group_send to %s: sent %s, dropping until it drains (overflow #%d)"


class FastInMemoryChannelLayer(ChannelHousekeeping, InMemoryChannelLayer):
    """In-memory channel layer with O(1) work per delivered message.

    Same config and API as ``channels.layers.InMemoryChannelLayer`` (a subclass,
    so ``isinstance`` checks hold). Differences:

    * Messages are copied shallowly, once per recipient: nested values are shared
      by all recipients and the sender, so nobody may mutate them. Top-level keys
      may be changed freely.
    * ``group_send`` to a full member logs once per episode, counts it
      (``overflows``, ``channel_overflows``, ``dropped``), queues ONE
      ``{"type": OVERFLOW}`` past capacity, then drops group messages to that
      channel until it is below capacity. ``send`` still raises ``ChannelFull``.
    * ``max_lag`` (seconds, 0 = off) bounds time in a queue likewise: past it,
      ``OVERFLOW`` goes to the head (closed after the send in flight, not the
      backlog) and group messages to that channel are dropped until it goes.
    * ``channel_capacity`` globs work (the stock layer never compiles them).
    * Times, join times in ``groups`` included, are ``time.monotonic()`` values.
    * Extensions for direct delivery: :meth:`attach`, :meth:`detach`,
      :meth:`receive_nowait`.
    """

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        max_lag: float = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(expiry=expiry, group_expiry=group_expiry, capacity=capacity, **kwargs)
        self.max_lag = max_lag
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.channels: dict[str, _Channel] = {}
        self.groups: dict[str, dict[str, float]] = {}  # group -> {channel: joined at}, insertion-ordered
        self._memberships: dict[str, set[str]] = {}  # channel -> groups: evicts without scanning groups
        self._sweep_every = min(expiry, group_expiry)
        self._next_sweep = 0.0
        self.overflows = 0  # overflow episodes, all channels
        self.channel_overflows: Counter[str] = Counter()  # per channel, kept while it is in a group
        self.dropped = 0  # group messages dropped during overflow episodes
        self._name_prefix = "".join(random.choices(string.ascii_letters, k=8))
        self._names = itertools.count()

    # -- channels ----------------------------------------------------------

    async def send(self, channel: str, message: Message) -> None:
        """Send a message onto a channel; raise ChannelFull if it is at capacity."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        now = time.monotonic()
        state = self._fresh(channel, now)
        if len(state.queue) >= state.capacity:
            raise ChannelFull(channel)
        self._push(state, message, now)

    async def receive(self, channel: str) -> Message:
        """Wait for and return the first message on the channel (cancellation-safe)."""
        self.require_valid_channel_name(channel)
        while True:
            # Looked up again after each wake-up: flush() replaces the state.
            state = self._fresh(channel, time.monotonic())
            if state.queue:
                message = self._pop(state)
                self._forget_if_idle(channel, state)
                return message
            # The future is only a wake-up call: the message stays queued until we
            # pop it ourselves, so a cancellation in between cannot lose it.
            # Created now, on the running loop: the layer outlives event loops.
            waiter = asyncio.get_running_loop().create_future()
            state.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(state)  # woken but leaving: hand the wake-up on
                raise
            finally:
                if waiter in state.waiters:
                    state.waiters.remove(waiter)
                self._forget_if_idle(channel, state)

    def receive_nowait(self, channel: str) -> Message | None:
        """Return the first queued message of the channel, or None when there is none."""
        state = self._fresh(channel, time.monotonic())
        if not state.queue:
            return None
        message = self._pop(state)
        self._forget_if_idle(channel, state)
        return message

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new, unused process-local channel name."""
        while True:
            # A counter behind a random part: unique without drawing 12 random letters each time.
            name = f"{prefix}.inmemory!{self._name_prefix}{next(self._names)}"
            if name not in self.channels and name not in self._memberships:
                return name

    def owns(self, channel: str) -> bool:
        """Return whether ``channel`` was made by this layer's :meth:`new_channel`."""
        return f".inmemory!{self._name_prefix}" in channel

    # -- groups ------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add the channel to the group (re-adding renews the membership)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.groups.setdefault(group, {})[channel] = time.monotonic()
        self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove the channel from the group, if it is in it."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        self._leave(group, channel)

    async def group_send(self, group: str, message: Message) -> None:
        """Deliver a shallow copy of the message to every member, inline; never raises ChannelFull."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        now = time.monotonic()
        self._maybe_sweep(now)
        members = self.groups.get(group)
        if not members:
            return
        joined_after = now - self.group_expiry
        evict: list[str] = []  # applied after the loop: members must not change while iterated
        leave: list[str] = []
        channels = self.channels
        skipped = 0  # busy members whose queue was full (rare): not delivered
        woken = False  # a member's receiver was waiting: it may be woken below
        for channel, joined in members.items():
            if joined < joined_after:
                leave.append(channel)
                continue
            state = channels.get(channel) or self._state(channel)
            # An idle member (the usual case) goes straight to its sink or queue.
            if (state.queue or state.overflowed) and not self._has_capacity(
                channel, state, group, now, evict
            ):
                skipped += 1
                continue
            if state.waiters:
                woken = True
            self._push(state, message, now)
        # A published event (realtime.events stamps it): counted once per group_send, not per member.
        sent_at = message.get(metrics.SENT_AT)
        if sent_at is not None:
            metrics.delivered(len(members) - len(leave) - skipped, sent_at)
        for channel in leave:
            self._leave(group, channel)
        for channel in evict:
            self._remove_from_groups(channel)
        # Yield once (not per member) if a receiver was woken above: it runs now, so e.g. a
        # sender gets its own echo before its next frame. Members with a sink took the
        # message on this stack already; not yielding then lets a publisher's batch of
        # events leave in one loop turn, written once per socket (realtime.directsend).
        if woken:
            await asyncio.sleep(0)

    # -- flush extension -----------------------------------------------------

    async def flush(self) -> None:
        """Drop every message, group membership and counter (sinks stay attached)."""
        sinks = {channel: state.sink for channel, state in self.channels.items() if state.sink}
        for state in self.channels.values():
            while state.waiters:  # blocked receivers re-register on the new, empty state
                self._wake(state)
        self.channels = {}
        for channel, sink in sinks.items():
            self._state(channel).sink = sink
        self.groups = {}
        self._memberships = {}
        self.overflows = self.dropped = 0
        self.channel_overflows = Counter()

    # -- internals -----------------------------------------------------------

    def _state(self, channel: str) -> _Channel:
        state = self.channels.get(channel)
        if state is None:
            state = self.channels[channel] = _Channel(self.get_capacity(channel))
        return state

    def _fresh(self, channel: str, now: float) -> _Channel:
        """Return the channel's state with expired messages dropped (evicting it from groups if any)."""
        self._maybe_sweep(now)
        state = self.channels.get(channel)
        if state is not None and self._expire_head(state, now):
            self._remove_from_groups(channel)  # may forget the now idle state: look it up after
        return self._state(channel)

    def _push(self, state: _Channel, message: Message, now: float) -> None:
        """Hand the sender's message to the sink, or queue a shallow copy of it."""
        # Only while nothing is queued: a message must not overtake older ones.
        if state.sink is not None and not state.queue:
            try:
                if state.sink(message):
                    return
            except Exception:
                logger.exception("Channel sink %r failed; message queued instead", state.sink)
        if state.queue is NO_MESSAGES:
            state.queue = deque()
        state.queue.append((now + self.expiry, dict(message)))
        if state.waiters:
            self._wake(state)

    def _has_capacity(self, channel: str, state: _Channel, group: str, now: float, evict: list[str]) -> bool:
        """Return whether a group message may go to this busy member; handle expiry and overflow."""
        if self._expire_head(state, now):
            evict.append(channel)  # an expired message means a dead consumer, as in the stock layer
            return False
        if state.overflowed:
            # Full, or told to close next (OVERFLOW at the head): what it would queue is never sent.
            if len(state.queue) >= state.capacity or (state.queue and state.queue[0][1]["type"] == OVERFLOW):
                self.dropped += 1
                return False
            state.overflowed = False  # drained below capacity: the episode is over
        if len(state.queue) >= state.capacity:  # a new overflow episode
            # Past capacity on purpose: the consumer must learn that it fell behind.
            self._overflow(channel, state, group, now, "full")
            return False
        # Queued at (expires - expiry): a reader slower than the rate sent falls behind in time
        # long before its queue is full (at 10 events/s, 1,000 queued are 100 s late).
        if self.max_lag and state.queue and state.queue[0][0] < now + self.expiry - self.max_lag:
            self._overflow(channel, state, group, now, "behind")
            return False
        return True

    def _overflow(self, channel: str, state: _Channel, group: str, now: float, why: str) -> None:
        """Start an overflow episode: count it, tell the consumer (OVERFLOW) and drop this message."""
        state.overflowed = True
        self.overflows += 1
        metrics.overflowed()
        self.channel_overflows[channel] += 1
        self.dropped += 1
        logger.warning(_OVERFLOW_LOG, channel, why, group, OVERFLOW, self.channel_overflows[channel])
        if why == "full":
            self._push(state, {"type": OVERFLOW}, now)  # after what fitted, which it still gets
        else:
            # First (with the head's expiry: order kept): what is queued is late; replay resends it.
            state.queue.appendleft((state.queue[0][0], {"type": OVERFLOW}))
