"""realtime.resume.LiveFilter: which live message events a connection skips."""

from __future__ import annotations

from realtime import resume
from realtime.resume import LiveFilter


def test_skips_what_the_connection_started_after():
    live = LiveFilter(floor=10)
    assert not live.fresh(9)
    assert not live.fresh(10)
    assert live.fresh(11)


def test_out_of_order_ids_are_all_fresh():
    live = LiveFilter(floor=0)
    assert live.fresh(101)
    assert live.fresh(100)  # a high-water mark would have dropped it


def test_skips_what_replay_sent_and_nothing_else():
    live = LiveFilter(floor=5)
    for message_id in (6, 8):
        live.replaying(message_id)
    assert not live.fresh(6)
    assert live.fresh(7)
    assert not live.fresh(8)
    assert live.fresh(9)


def test_forgets_replayed_ids_after_the_layer_expiry(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(resume.time, "monotonic", lambda: now[0])
    live = LiveFilter(floor=0)
    live.replaying(3)
    assert not live.fresh(3)
    now[0] += resume.REMEMBER_SECONDS + 1
    assert live.fresh(4)
    assert live.replayed is None
