"""The strict Content-Security-Policy (settings.SECURE_CSP): on every page, and no page needs more.

The header comes from Django's own middleware on Django 6 and from project.csp on 5.2;
both must write the same policy. The browser tests show the pages working under it.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import Resolver404, resolve, reverse

from project.csp import ContentSecurityPolicyMiddleware, build_policy
from realtime.navigation import declared_pages
from tests.csp import POLICY, assert_strict_page


def served(path: str) -> bool:
    """Return whether this project serves ``path`` (an app removed takes its pages away)."""
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


# The login page, /, and the page every installed app declares (a generated one too); an app's
# other pages are its own tests' (tests/csp.py).
PAGES = list(
    dict.fromkeys(
        path for path in ["/accounts/login/", "/", *(reverse(n) for _, n in declared_pages())] if served(path)
    )
)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_strict_policy_and_needs_nothing_it_blocks(alice_client, path):
    assert_strict_page(alice_client, path)


@pytest.mark.django_db(transaction=True)
def test_api_responses_and_the_logged_out_redirect_carry_it_too(alice_client):
    assert alice_client.get("/api/me")["Content-Security-Policy"] == POLICY
    # The redirect to the login page.
    assert Client().get("/accounts/password_change/")["Content-Security-Policy"] == POLICY


def test_the_django_5_stand_in_writes_the_same_policy():
    assert build_policy(settings.SECURE_CSP) == POLICY
    middleware = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("page"))
    assert middleware(RequestFactory().get("/"))["Content-Security-Policy"] == POLICY


def test_the_stand_in_writes_every_kind_of_value_as_django_6_does():
    config = {
        "default-src": ["'self'"],
        "img-src": {"https:", "'self'"},
        "report-uri": "/csp/",
        "upgrade-insecure-requests": True,
        "frame-src": None,
        "worker-src": False,
        "media-src": [],
    }
    assert build_policy(config) == (
        "default-src 'self'; img-src 'self' https:; report-uri /csp/; upgrade-insecure-requests"
    )


def test_the_stand_in_keeps_a_views_own_header_and_debug_pages():
    def respond(status=200, content_type="text/html", csp=None):
        response = HttpResponse("page", status=status, content_type=content_type)
        if csp:
            response["Content-Security-Policy"] = csp
        middleware = ContentSecurityPolicyMiddleware(lambda request: response)
        return middleware(RequestFactory().get("/")).get("Content-Security-Policy")

    assert respond(csp="default-src *") == "default-src *"
    with override_settings(DEBUG=True):
        # Django's debug pages (404 and 500, under DEBUG) run inline scripts: left alone, as on 6.
        assert respond(status=500) is None
        assert respond(status=404) is None
        assert respond(status=404, content_type="application/json") == POLICY
        assert respond() == POLICY
    assert respond(status=500) == POLICY
