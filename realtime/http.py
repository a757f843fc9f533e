"""The JSON API's plumbing: one error shape, method and identity checks, the topic's access rule."""

from __future__ import annotations

import functools
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import metrics
from .errors import ClientError
from .topics import Topic


def json_error(code: str, detail: str, status: int) -> JsonResponse:
    """Return the API's error body ``{"error": code, "detail": detail}`` (counted by code)."""
    metrics.client_error("http", code)
    return JsonResponse({"error": code, "detail": detail}, status=status)


def refusal(user) -> JsonResponse:
    """Return the answer to a caller a topic refused: 401 without identity, else 403."""
    if user is None or not (user.is_authenticated and user.is_active):
        return json_error("unauthorized", "Log in or send 'Authorization: Bearer <token>'.", 401)
    return json_error("forbidden", "You may not read or write this topic.", 403)


def api(*methods: str, identity: bool = True, topic: type[Topic] | None = None):
    """Make an async view an API endpoint: allowed methods, identity, the topic's rule, JSON errors.

    With ``topic``, the view receives ``(request, user, topic)``: the topic
    its URL names, which the caller may join (the same rule as its
    WebSocket and SSE stream).
    """

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = json_error("method_not_allowed", f"Use {' or '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            user = await request.auser()
            if identity and not (user.is_authenticated and user.is_active):
                return refusal(user)
            if topic is not None:
                target = topic.from_route(**kwargs)
                if not target.can_join(user):
                    return refusal(user)
                args, kwargs = (target,), {}
            try:
                return await view(request, user, *args, **kwargs)
            except ClientError as exc:
                return json_error(exc.code, exc.detail, exc.http_status)

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict:
    """Return the request's JSON object body, or raise ClientError."""
    too_large = ClientError("too_large", f"Bodies are limited to {settings.REALTIME_MAX_FRAME} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django would answer 400
        raise too_large from None
    if len(raw) > settings.REALTIME_MAX_FRAME:
        raise too_large
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ClientError("bad_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ClientError("bad_json", "The body must be a JSON object.")
    return body
