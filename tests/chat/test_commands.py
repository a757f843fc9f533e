"""The chat's management command: announce."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chat.topic import RoomTopic
from realtime import bus
from realtime.models import BusEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    """Run a management command and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_announce_without_redis_writes_the_event_for_the_server_to_read(monkeypatch):
    monkeypatch.setattr(bus, "serving", False)  # a command's process serves nobody
    assert "Announced to lobby" in run("announce", "lobby", "hello")
    row = BusEvent.objects.get()
    assert row.group == RoomTopic("lobby").group
    assert json.loads(json.loads(row.payload)["text"]) == {"type": "announcement", "text": "hello"}


@pytest.mark.parametrize(("room", "text"), [("Bad Slug", "hi"), ("lobby", "  ")])
def test_announce_rejects_bad_arguments(room, text):
    with pytest.raises(CommandError):
        run("announce", room, text)
