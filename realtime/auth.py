"""Personal API tokens, and the middleware that resolves who is calling.

The middleware is a plain Django middleware in ``settings.MIDDLEWARE``; the
handshake bridge runs that stack on WebSockets too, so the same code guards
views, the SSE stream and sockets.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.functional import LazyObject, empty

from .db import release_connections
from .middleware import DATABASE_UNAVAILABLE, database_unavailable
from .models import ApiToken, hash_token

# last_used is a hint for the admin, not an audit log: write it rarely.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def bearer_token(header: str) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header's value, or None."""
    scheme, _, value = header.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def raw_token_from(request: HttpRequest) -> str | None:
    """Return the bearer token a request carries, or None.

    ``Authorization: Bearer <token>`` always; ``?access_token=`` only on a
    WebSocket handshake, where browsers cannot set headers.
    """
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is not None:
        return token
    if getattr(request, "is_websocket", False):
        return request.GET.get("access_token") or None
    return None


def live_tokens(raw: str) -> QuerySet[ApiToken]:
    """Return the unrevoked tokens of an active user matching ``raw`` (at most one)."""
    return ApiToken.objects.filter(digest=hash_token(raw), revoked=False, user__is_active=True)


def token_authenticate(*, raw: str) -> ApiToken | None:
    """Return the live token matching ``raw`` with its active user, or None (sync ORM)."""
    try:
        token = live_tokens(raw).select_related("user").get()
    except ApiToken.DoesNotExist:
        return None
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token


def issue_token(user, name: str = "") -> str | None:
    """Issue a token for ``user`` and return its raw value; None if they hold the most allowed.

    At most REALTIME_MAX_TOKENS_PER_USER unrevoked tokens per user. The
    user's row is locked while counting (SQLite: the write lock taken at
    BEGIN), so concurrent requests, in one process or several, cannot all
    pass the count. Sync ORM: run it off the event loop.
    """
    with transaction.atomic():
        locked = get_user_model().objects.select_for_update().filter(pk=user.pk)
        if not list(locked.values_list("pk", flat=True)):
            return None  # the user was deleted meanwhile
        held = ApiToken.objects.filter(user=user, revoked=False).count()
        if held >= settings.REALTIME_MAX_TOKENS_PER_USER:
            return None
        _, raw = ApiToken.issue(user, name=name)
    return raw


def _released(func):
    """Decorate ``func`` to give back, in the same thread, the connections it took (release_connections)."""

    @functools.wraps(func)
    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            release_connections()

    return call


@_released
def _token_lookup(raw: str) -> ApiToken | None:
    return token_authenticate(raw=raw)


@_released
def _session_lookup(request: HttpRequest) -> None:
    """Load the session's user now (sync: in the request's thread) and let ``auser()`` return it."""
    user = request.user  # AuthenticationMiddleware's lazy user
    if isinstance(user, LazyObject) and user._wrapped is empty:
        user._setup()
    lazy_auser = request.auser

    async def auser():
        current = request.user  # login() and logout() replace it
        if isinstance(current, LazyObject):
            if current._wrapped is empty:
                return await lazy_auser()
            return current._wrapped
        return current

    request.auser = auser


class BearerTokenMiddleware:
    """Resolve who is calling: a bearer token (a bad one is refused with 401), else the session's user.

    Sync and async capable: in a sync chain (the WebSocket handshake, see
    realtime.handshake) it queries in the thread it runs in, and the
    handshake loads the session's user itself. In an async chain (views
    under ASGI) it makes one thread hop when a token or a session cookie is
    present: the token, or the session and its user, are loaded, and the
    request's thread gives its database connection back to the pool before
    the view runs (realtime.db.release_connections). Left to Django, the
    session and the user load lazily on the request's thread, which then
    holds a pooled connection while the view waits for the realtime DB
    thread: a burst of such requests can hold every connection of the pool.
    A database that cannot answer (down, or its pool exhausted) is a 503,
    as from a view (realtime.middleware).
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
        try:
            token = token_authenticate(raw=raw)
        except DATABASE_UNAVAILABLE as exc:
            return database_unavailable(request, exc)
        return self.authenticate(request, token) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        raw = raw_token_from(request)
        try:
            if raw is not None:
                refusal = self.authenticate(request, await sync_to_async(_token_lookup)(raw))
                if refusal is not None:
                    return refusal
            elif settings.SESSION_COOKIE_NAME in request.COOKIES and hasattr(request, "auser"):
                await sync_to_async(_session_lookup)(request)
        except DATABASE_UNAVAILABLE as exc:
            return database_unavailable(request, exc)
        return await self.get_response(request)

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
        # nothing for CSRF to protect (the wire contract (docs/contract.md), section 1).
        request._dont_enforce_csrf_checks = True
        return None
