"""The core's management commands: create_token, seed_demo."""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from realtime.models import ApiToken, hash_token

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


@override_settings(DEBUG=True)
def test_seed_demo_prints_the_address_of_every_declared_page(monkeypatch):
    for config in apps.get_app_configs():
        monkeypatch.setattr(config, "realtime_pages", [], raising=False)
    monkeypatch.setattr(apps.get_app_config("realtime"), "realtime_pages", [("Health", "healthz")])
    monkeypatch.setenv("PORT", "8123")
    output = run("seed_demo")
    assert "The apps' pages:\n  Health: http://127.0.0.1:8123/healthz\n" in output


@override_settings(DEBUG=False)
def test_seed_demo_does_nothing_without_debug():
    assert "DEBUG is off" in run("seed_demo")
    assert not get_user_model().objects.exists()
