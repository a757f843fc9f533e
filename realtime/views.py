"""The core's HTTP views: who am I, API tokens, health, and JSON errors under /api/."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_GET, require_safe

from .auth import issue_token
from .http import api, json_error, refusal
from .memberships import count as live_connections
from .topics import user_public


@api("GET", identity=False)
async def me(request: HttpRequest, user) -> JsonResponse:
    """Return who the caller is; 401 JSON without identity, leaving the browser's cookie alone.

    Pages ask it after a 4401 (live-client.js) to learn whether the browser
    holds a new session of the same user (a password change cycles the key).
    That probe may leave with the old cookie while the response setting the
    new one is on its way; Django would answer it by deleting the session
    cookie, and should that answer land last, the browser would be logged out.
    """
    if not (user.is_authenticated and user.is_active):
        request.COOKIES.pop(settings.SESSION_COOKIE_NAME, None)  # SessionMiddleware: no deletion
        return refusal(user)
    return JsonResponse(user_public(user))


@api("POST")
async def tokens(request: HttpRequest, user) -> JsonResponse:
    """Issue a personal API token for the caller; the raw value is shown only here.

    A form body was parsed before (realtime.middleware.ApiBodyErrorsMiddleware).
    """
    name = request.POST.get("name", "") if request.content_type != "application/json" else ""
    raw = await sync_to_async(issue_token)(user, name=name[:100])
    if raw is None:
        limit = settings.REALTIME_MAX_TOKENS_PER_USER
        return json_error(
            "rate_limited", f"You hold {limit} API tokens, the most allowed: revoke one in the admin.", 429
        )
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


@require_safe
async def favicon(request: HttpRequest) -> HttpResponse:
    """Send ``/favicon.ico`` to the static icon: pages without the header's link (the admin) ask for it."""
    response = HttpResponseRedirect(static("realtime/favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


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
