"""The chat's settings are CHAT_*; REALTIME_MAX_TEXT, the name the wire contract used first, still works."""

from __future__ import annotations

from chat import conf


def test_max_text_reads_chat_max_text_then_its_earlier_name(settings, monkeypatch):
    assert conf.max_text() == 2000
    monkeypatch.setenv("REALTIME_MAX_TEXT", "100")
    assert conf.max_text() == 100
    monkeypatch.setenv("CHAT_MAX_TEXT", "50")
    assert conf.max_text() == 50
    settings.CHAT_MAX_TEXT = 25
    assert conf.max_text() == 25


def test_the_chat_s_defaults():
    assert (conf.typing_rate(), conf.rooms_per_user_per_hour()) == ("5/1s", 20)
