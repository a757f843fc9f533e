"""The core's URLs: identity, API tokens and health (include them from the project's urls)."""

from django.urls import path

from . import views

urlpatterns = [
    path("api/me", views.me, name="api-me"),
    path("api/tokens", views.tokens, name="api-tokens"),
    path("healthz", views.healthz, name="healthz"),
]
