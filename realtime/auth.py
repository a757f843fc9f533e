"""Personal API tokens and the bearer-token middleware.

The middleware is a plain Django middleware in ``settings.MIDDLEWARE``; the
handshake bridge runs that stack on WebSockets too, so the same code guards
views, the SSE stream and sockets.
"""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from .models import ApiToken, hash_token

# last_used is a hint for the admin, not an audit log: write it rarely.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def raw_token_from(request: HttpRequest) -> str | None:
    """Return the bearer token a request carries, or None.

    ``Authorization: Bearer <token>`` always; ``?access_token=`` only on a
    WebSocket handshake, where browsers cannot set headers.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if getattr(request, "is_websocket", False):
        return request.GET.get("access_token") or None
    return None


def token_authenticate(*, raw: str) -> ApiToken | None:
    """Return the live token matching ``raw`` with its active user, or None (sync ORM)."""
    try:
        token = ApiToken.objects.select_related("user").get(
            digest=hash_token(raw), revoked=False, user__is_active=True
        )
    except ApiToken.DoesNotExist:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token


class BearerTokenMiddleware:
    """Authenticate requests that carry a bearer token; refuse a bad token with 401.

    Sync and async capable: in a sync chain (the WebSocket handshake, see
    realtime.handshake) it queries in the thread it runs in; in an async
    chain (views under ASGI) it makes one thread hop, only when a token is
    present.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        raw = raw_token_from(request)
        if raw is None:
            return self.get_response(request)
        return self.authenticate(request, token_authenticate(raw=raw)) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        raw = raw_token_from(request)
        if raw is None:
            return await self.get_response(request)
        token = await sync_to_async(token_authenticate)(raw=raw)
        return self.authenticate(request, token) or await self.get_response(request)

    @staticmethod
    def authenticate(request: HttpRequest, token: ApiToken | None) -> HttpResponse | None:
        """Make ``token``'s user the request's user; return the 401 to answer if there is no token."""
        if token is None:
            return JsonResponse(
                {"error": "unauthorized", "detail": "Invalid or revoked API token."}, status=401
            )
        user = token.user

        async def auser():
            return user

        request.user = user
        request.auser = auser
        request.auth_token = token
        # A bearer token is not an ambient browser credential, so there is
        # nothing for CSRF to protect (CONTRACT.md section 1).
        request._dont_enforce_csrf_checks = True
        return None
