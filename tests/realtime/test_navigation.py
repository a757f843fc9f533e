"""The header's links: the pages installed apps declare (AppConfig.realtime_pages), and ``/``."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from realtime import navigation


def declare(monkeypatch, *pages: tuple[str, str]) -> None:
    """Make ``pages`` the only ones declared (core URL names, so no app is needed), by the core itself."""
    for config in apps.get_app_configs():
        monkeypatch.setattr(config, "realtime_pages", [], raising=False)
    monkeypatch.setattr(apps.get_app_config("realtime"), "realtime_pages", list(pages))


def test_pages_are_the_declared_ones_in_order_the_current_one_marked(monkeypatch):
    declare(monkeypatch, ("Health", "healthz"), ("Me", "api-me"))
    request = RequestFactory().get("/api/me")
    assert navigation.pages(request) == {
        "nav_pages": [
            {"label": "Health", "url": "/healthz", "current": False},
            {"label": "Me", "url": "/api/me", "current": True},
        ]
    }


@pytest.mark.django_db
def test_the_header_links_each_page_for_a_logged_in_user_only(monkeypatch, django_user_model):
    declare(monkeypatch, ("Health", "healthz"))
    request = RequestFactory().get("/healthz")
    request.user = django_user_model.objects.create_user("alice", password="alice")
    html = render_to_string("realtime/home.html", request=request)
    assert '<nav class="nav" aria-label="Pages">' in html
    assert '<a href="/healthz" aria-current="page">Health</a>' in html
    assert 'class="brand" href="/"' in html
    request.user = AnonymousUser()
    assert "<nav" not in render_to_string("realtime/home.html", request=request)


@pytest.mark.django_db
def test_home_goes_to_the_first_page_or_says_no_app_is_installed(monkeypatch, django_user_model):
    client = Client()
    assert client.get("/").status_code == 302  # login first, as any page
    client.force_login(django_user_model.objects.create_user("alice", password="alice"))
    declare(monkeypatch)
    response = client.get("/api/me")  # the core's URLs answer as before
    assert response.status_code == 200
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    assert navigation.home(request).status_code == 302  # anonymous: to the login page
    request.user = django_user_model.objects.get(username="alice")
    assert b"No page yet" in navigation.home(request).content
    declare(monkeypatch, ("Me", "api-me"), ("Health", "healthz"))
    response = navigation.home(request)
    assert (response.status_code, response["Location"]) == (302, "/api/me")


def test_a_page_without_a_url_is_left_out_with_a_warning(monkeypatch, caplog):
    declare(monkeypatch, ("Gone", "no-such-url"), ("Health", "healthz"))
    pages = navigation.pages(RequestFactory().get("/"))["nav_pages"]
    assert [page["label"] for page in pages] == ["Health"]
    assert "(URL name 'no-such-url') has no URL" in caplog.text


def test_favicon_ico_redirects_to_the_static_icon_that_every_page_links():
    client = Client()
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("realtime/favicon.svg")
    assert client.get(response["Location"]).status_code == 200
    html = render_to_string("registration/login.html", request=RequestFactory().get("/accounts/login/"))
    assert '<link rel="icon" href="/static/realtime/favicon.svg" type="image/svg+xml">' in html
