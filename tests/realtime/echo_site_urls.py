"""ROOT_URLCONF of tests.realtime.echo_site: the echo page, the echo topic's SSE route, the project's URLs."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path

from tests.realtime.echo_urls import urlpatterns as echo_and_project

# On the project's base.html: the header (the username, the live status) and the strict CSP.
PAGE = engines["django"].from_string("""{% extends "base.html" %}{% load static %}
{% block title %}Echo{% endblock %}
{% block topbar %}<div><h1>Echo</h1><p id="status" class="status" data-live-status
  data-state="connecting" role="status">connecting…</p></div>{% endblock %}
{% block content %}<section class="card" id="echo" data-name="{{ name }}"><h2>Said</h2>
  <ol id="said"></ol></section>{% endblock %}
{% block scripts %}
  {% for script in scripts %}<script src="{% static script %}" defer></script>{% endfor %}
{% endblock %}""")
SCRIPTS = [
    "realtime/backoff.js",
    "realtime/ws-transport.js",
    "realtime/sse-transport.js",
    "realtime/transport-policy.js",
    "realtime/live-client.js",
    "echo/echo-page.js",
]


@login_required
def page(request: HttpRequest, name: str) -> HttpResponse:
    """The page of ``echo.<name>``: every ``said`` event, in id order, caught up after a drop."""
    return HttpResponse(PAGE.render({"name": name, "scripts": SCRIPTS}, request))


urlpatterns = [path("echo/<str:name>/", page, name="echo-page"), *echo_and_project]
