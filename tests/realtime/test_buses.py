"""REALTIME_BUS: which bus is selected by default, and the settings each bus refuses at start."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime import buses, stores


def test_the_default_is_redis_with_redis_url_else_memory(settings):
    settings.REALTIME_BUS = ""
    settings.REDIS_URL = ""
    assert buses.selected() == "memory"
    assert stores.current() is None, "one process: no store, state in memory"
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert buses.selected() == "redis"
    settings.REALTIME_BUS = "postgres"
    assert buses.selected() == "postgres", "set, it wins over REDIS_URL"


def test_an_unknown_bus_is_refused(settings):
    settings.REALTIME_BUS = "kafka"
    with pytest.raises(ImproperlyConfigured, match="memory, postgres, redis"):
        buses.selected()


# Only the setting is read; the connections stay as they are.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_postgres_on_sqlite_fails_at_start_with_the_reason(settings):
    settings.REALTIME_BUS = "postgres"
    settings.DATABASES = {**settings.DATABASES, "default": {"ENGINE": "django.db.backends.sqlite3"}}
    with pytest.raises(ImproperlyConfigured, match="needs DATABASE_URL on PostgreSQL"):
        buses.check()


def test_redis_without_redis_url_fails_at_start(settings):
    settings.REALTIME_BUS = "redis"
    settings.REDIS_URL = ""
    with pytest.raises(ImproperlyConfigured, match="needs REDIS_URL"):
        buses.check()
