"""realtime.backends and realtime.sessions: the handshake's prepared lookups behave as Django's."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.sessions.models import Session
from django.utils import timezone

from realtime.backends import ModelBackend, _user_lookup
from realtime.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_get_user_returns_the_same_user_as_django():
    user = get_user_model().objects.create_user("alice", password="pw-123456", email="a@example.com")
    ours, django = ModelBackend().get_user(str(user.pk)), DjangoModelBackend().get_user(user.pk)
    assert type(ours) is type(django)
    fields = [f.attname for f in get_user_model()._meta.concrete_fields]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(django, f) for f in fields}
    assert ours.get_session_auth_hash() == django.get_session_auth_hash()
    # A whole row, loaded from this database, as the ORM's own instance is.
    assert ours.get_deferred_fields() == set()
    assert (ours._state.db, ours._state.adding) == (django._state.db, django._state.adding)
    assert type(ours.is_active) is bool and ours.date_joined.tzinfo is not None


def test_get_user_refuses_inactive_missing_and_malformed_ids():
    user = get_user_model().objects.create_user("bob", is_active=False)
    backend = ModelBackend()
    assert backend.get_user(user.pk) is None
    assert backend.get_user(user.pk + 1000) is None
    assert backend.get_user("not-a-number") is None


def test_a_user_manager_that_filters_rows_keeps_djangos_lookup():
    filtering = SimpleNamespace(get_queryset=lambda: get_user_model().objects.filter(is_active=True))
    assert _user_lookup(get_user_model(), filtering, "default") is None
    assert _user_lookup(get_user_model(), get_user_model()._default_manager, "default") is not None


def test_session_loads_its_data():
    store = SessionStore()
    store["colour"] = "blue"
    store.create()
    loaded = SessionStore(store.session_key)
    assert loaded.load() == {"colour": "blue"}
    assert loaded.session_key == store.session_key


def test_expired_or_unknown_session_loads_empty_and_forgets_its_key():
    store = SessionStore()
    store["colour"] = "blue"
    store.create()
    past = timezone.now() - timedelta(seconds=1)
    Session.objects.filter(session_key=store.session_key).update(expire_date=past)
    expired = SessionStore(store.session_key)
    assert expired.load() == {}
    assert expired.session_key is None
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {}
    assert unknown.session_key is None
