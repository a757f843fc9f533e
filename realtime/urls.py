"""The core's URLs: identity, API tokens, health and metrics (include them from the project's urls)."""

from django.urls import path

from . import metrics_view, views

urlpatterns = [
    path("api/me", views.me, name="api-me"),
    path("api/tokens", views.tokens, name="api-tokens"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view.metrics, name="metrics"),
]
