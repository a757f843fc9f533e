"""The chat's management command: announce."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    """Run a management command and return what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_announce_without_redis_says_it_needs_redis_url():
    with pytest.raises(CommandError, match="REDIS_URL"):
        run("announce", "lobby", "hello")


@pytest.mark.parametrize(("room", "text"), [("Bad Slug", "hi"), ("lobby", "  ")])
def test_announce_rejects_bad_arguments(room, text):
    with pytest.raises(CommandError):
        run("announce", room, text)
