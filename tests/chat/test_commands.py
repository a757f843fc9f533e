"""Management commands: create_token, announce, seed_demo."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from chat.topic import RoomTopic
from realtime import bus
from realtime.models import ApiToken, BusEvent, hash_token

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    """Run a management command and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_token_prints_a_token_stored_only_as_a_hash():
    get_user_model().objects.create_user("alice", password="alice")
    raw = run("create_token", "alice").strip()
    token = ApiToken.objects.get()
    assert token.digest == hash_token(raw) and raw not in (token.digest, token.prefix)


def test_create_token_for_unknown_user_fails():
    with pytest.raises(CommandError, match="No user"):
        run("create_token", "ghost")


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


@override_settings(DEBUG=True)
def test_seed_demo_creates_demo_users_once():
    run("seed_demo")
    run("seed_demo")
    users = get_user_model().objects.order_by("username")
    assert [(u.username, u.is_superuser) for u in users] == [
        ("admin", True),
        ("alice", False),
        ("bob", False),
    ]
    assert users.get(username="alice").check_password("alice")


@override_settings(DEBUG=False)
def test_seed_demo_does_nothing_without_debug():
    assert "DEBUG is off" in run("seed_demo")
    assert not get_user_model().objects.exists()
