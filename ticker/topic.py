"""The ticker's topic and its state: the latest snapshot of prices, kept in the database.

Prices are state, not a log: whoever reads them (``GET /api/ticker``, a new
WebSocket or SSE stream) gets the latest snapshot. One database row holds
it (ticker.models.Snapshot), so every process of a cluster reads what the
one feed wrote, and a restart, with or without Redis, goes on from its seq.
The feed moves it on with a compare-and-set (:func:`advance`): of two feeds
running at once, only one stores each seq, and none stores an older one.
"""

from __future__ import annotations

from django.db import IntegrityError
from django.utils import timezone

from realtime import Opening, Topic, db_call, user_public

from .models import Snapshot

SYMBOLS = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "WAYNE", "STARK"]
ROW = 1  # the primary key of the one row


def snapshot(seq: int, prices: dict[str, dict[str, str]]) -> dict:
    """Return the ``prices`` event of one moment (the wire contract, section 7)."""
    return {"type": "prices", "seq": seq, "prices": prices, "at": timezone.now().isoformat()}


@db_call
def latest() -> dict:
    """Return the latest snapshot; before the feed's first tick, every symbol at 100.00 (seq 0)."""
    if (event := Snapshot.objects.filter(pk=ROW).values_list("event", flat=True).first()) is not None:
        return event
    first = snapshot(0, {s: {"price": "100.00", "change": "0.00"} for s in SYMBOLS})
    try:
        Snapshot.objects.create(pk=ROW, seq=0, event=first)
    except IntegrityError:  # another process stored the first one
        return Snapshot.objects.values_list("event", flat=True).get(pk=ROW)
    return first


@db_call
def advance(previous: dict, following: dict) -> bool:
    """Store ``following`` if ``previous`` is still the latest; return whether it was stored."""
    stored = Snapshot.objects.filter(pk=ROW, seq=previous["seq"])
    return stored.update(seq=following["seq"], event=following) == 1


class TickerTopic(Topic):
    """``ticker``: prices events, de-duplicated by ``seq``; no client frames but the core's ping."""

    kind = "ticker"

    async def open(self, user, after: int | None) -> Opening:
        """Hello, then the latest snapshot; live snapshots up to its seq are skipped."""
        current = await latest()
        return Opening(
            hello={"type": "hello", "user": user_public(user), "topic": "ticker"},
            floor=current["seq"],
            catch_up=[current],
        )

    def event_id(self, event: dict) -> int | None:
        """Return a prices event's seq (SSE's ``id:``)."""
        return event["seq"] if event["type"] == "prices" else None
