"""ASGI middleware: a request without a credential may not send a large body.

Django's ASGI handler reads a request's whole body, spooling it to a
temporary file, before any middleware or view runs, so an anonymous POST of
64 MiB was read to its end and only then refused with 401 or 403. This
wraps the HTTP app and answers 413 at once, without reading the body, when
a request carries neither a session cookie nor an ``Authorization`` header
and its ``Content-Length`` is over ``REALTIME_MAX_ANONYMOUS_BODY`` bytes; a
chunked body without a length is read only up to that limit. Requests with
a credential keep Django's own limits (``DATA_UPLOAD_MAX_MEMORY_SIZE``) and
the uploads' (``REALTIME_UPLOAD_MAX_SIZE``): a tus PATCH is authenticated.

The check is on the presence of a credential, not on its validity (that
needs the database, and Django's stack checks it): a forged cookie gets
past it, so the proxy in front bounds every body too (docs/security.md).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http.cookie import parse_cookie


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def has_credential(scope: dict) -> bool:
    """Return whether the request carries an Authorization header or a session cookie."""
    if _header(scope, b"authorization") is not None:
        return True
    cookie = _header(scope, b"cookie")
    return cookie is not None and settings.SESSION_COOKIE_NAME in parse_cookie(cookie.decode("latin-1"))


def content_length(scope: dict) -> int | None:
    """Return the request's Content-Length, or None without a valid one."""
    raw = _header(scope, b"content-length")
    if raw is None or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


class AnonymousBodyLimit:
    """Refuse with 413, before reading it, the body of a request with no credential over the limit."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http" or has_credential(scope):
            await self.app(scope, receive, send)
            return
        limit = settings.REALTIME_MAX_ANONYMOUS_BODY
        length = content_length(scope)
        if length is not None:
            if length > limit:
                await too_large(send, limit)
                return
            await self.app(scope, receive, send)
            return
        if _header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)  # no length and not chunked: no body
            return
        # Chunked: read up to the limit, then hand what was read to the app.
        read: list[dict] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # the client left: the app hears it
            size += len(message.get("body", b""))
            if size > limit:
                await too_large(send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


async def too_large(send, limit: int) -> None:
    """Answer 413 with the API's JSON error, and close the connection (the body is left unread)."""
    body = json.dumps(
        {
            "error": "too_large",
            "detail": f"Without a session or an API token a request body is limited to {limit} bytes.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
