"""The core's HTTP views: who am I, API tokens, health, and JSON errors under /api/."""

from __future__ import annotations

from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_GET

from .connection import live_connections
from .http import api, json_error
from .models import ApiToken
from .topics import user_public


@api("GET")
async def me(request: HttpRequest, user) -> JsonResponse:
    """Return who the caller is."""
    return JsonResponse(user_public(user))


@api("POST")
async def tokens(request: HttpRequest, user) -> JsonResponse:
    """Issue a personal API token for the caller; the raw value is shown only here."""
    name = request.POST.get("name", "") if request.content_type != "application/json" else ""
    _, raw = await ApiToken.aissue(user, name=name[:100])
    return JsonResponse({"token": raw}, status=201)


@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Report liveness, the channel layer in use and this process's live connections."""
    layer = get_channel_layer()
    return JsonResponse(
        {
            "status": "ok",
            "channel_layer": f"{type(layer).__module__}.{type(layer).__qualname__}",
            "connections": live_connections(),
        }
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Answer a CSRF failure: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error("forbidden", f"CSRF check failed: {reason}", 403)
    return django_csrf_failure(request, reason)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown URL: JSON under /api/, a plain page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error("not_found", "No such endpoint.", 404)
    return HttpResponse("Not found.", status=404, content_type="text/plain")


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unexpected failure: JSON under /api/."""
    if request.path.startswith("/api/"):
        return json_error("server_error", "Unexpected server error.", 500)
    return HttpResponse("Server error.", status=500, content_type="text/plain")
