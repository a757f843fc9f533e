"""The core's URLs: identity, API tokens, health, metrics and ``/`` (include them after the apps' URLs)."""

from django.urls import path

from . import metrics_view, navigation, views

urlpatterns = [
    path("api/me", views.me, name="api-me"),
    path("api/tokens", views.tokens, name="api-tokens"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    # The first app page; an app that serves "/" itself comes first in project/urls.py.
    path("", navigation.home, name="home"),
]
