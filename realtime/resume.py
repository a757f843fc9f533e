"""Which live events a connection skips: those it started after, and those replay already sent."""

from __future__ import annotations

import time

# How long replayed ids are remembered: a live event older than the channel
# layer's expiry (60 s) is dropped by the layer anyway.
REMEMBER_SECONDS = 60.0


class LiveFilter:
    """Skip live events at or below ``floor`` and those replay sent (by id, not by a high-water mark).

    A high-water mark would be wrong with several processes: each stores and
    broadcasts its own events, so a topic's ids can arrive out of order (B's
    id 101 before A's id 100), and a mark would drop 100 for good.
    """

    __slots__ = ("floor", "forget_at", "replayed")

    def __init__(self, floor: int) -> None:
        self.floor = floor  # the client has (or did not ask for) everything up to here
        self.replayed: set[int] | None = None  # None, not an empty set: most connections never replay
        self.forget_at = 0.0

    def replaying(self, event_id: int) -> None:
        """Note that replay sent ``event_id``."""
        if self.replayed is None:
            self.replayed = set()
        self.replayed.add(event_id)
        self.forget_at = time.monotonic() + REMEMBER_SECONDS

    def fresh(self, event_id: int) -> bool:
        """Return whether a live event with ``event_id`` is new to this connection."""
        if event_id <= self.floor:
            return False
        if self.replayed is None:
            return True
        if time.monotonic() > self.forget_at:
            self.replayed = None
            return True
        return event_id not in self.replayed
