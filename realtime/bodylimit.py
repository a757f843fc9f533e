"""ASGI middleware: a request without a live credential may not send a large body.

Django's ASGI handler reads a request's whole body, spooling it to a
temporary file, before any middleware or view runs, so an anonymous POST of
64 MiB was read to its end and only then refused with 401 or 403. This
wraps the HTTP app and answers 413 at once, without reading the body, when
its ``Content-Length`` is over ``REALTIME_MAX_ANONYMOUS_BODY`` bytes and
the request carries no live credential: no ``Authorization: Bearer``
token of an active user, no session cookie of a session that has not
expired. A chunked body without a length is read up to that limit, then
judged the same way. Requests with a live credential keep Django's own
limits (``DATA_UPLOAD_MAX_MEMORY_SIZE``) and an app's own, such as the
largest file it accepts: such a request is authenticated.

The credential is looked up (one query on the realtime DB thread) only for
a body over the limit, so small requests cost nothing more; a forged
cookie or token gets the 413 too. While the database is down the body is
let through: Django's stack then answers 503.

``Content-Length`` is read as the HTTP servers read it: digits, with
spaces or tabs around them (httptools keeps trailing ones in the value it
passes on), of any size (httptools takes up to 2**64 - 1, Twisted any).
Read more strictly, ``67108864 `` would have been no length at all and the
body read to its end. A value no server honours (two headers, a sign, a
comma list h11 has not merged) is a 400 for everyone: Django would fail
on it later.
"""

from __future__ import annotations

import json
import re
from importlib import import_module

from django.conf import settings
from django.http.cookie import parse_cookie

from .db import db_call
from .middleware import DATABASE_UNAVAILABLE


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _session_key(scope: dict) -> str | None:
    cookie = _header(scope, b"cookie")
    if cookie is None:
        return None
    return parse_cookie(cookie.decode("latin-1")).get(settings.SESSION_COOKIE_NAME) or None


@db_call
def _live(token: str | None, session_key: str | None) -> bool:
    """Return whether ``token`` names a live token or ``session_key`` a live session (sync ORM)."""
    from .auth import live_tokens

    if token is not None and live_tokens(token).exists():
        return True
    if session_key is None:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    store.load()  # an unknown or expired key is forgotten: session_key becomes None
    return store.session_key is not None


async def has_live_credential(scope: dict) -> bool:
    """Return whether the request carries a live bearer token or session cookie (one DB hop if any)."""
    from .auth import bearer_token  # imports the models: not when this module is imported

    header = _header(scope, b"authorization")
    token = bearer_token(header.decode("latin-1")) if header is not None else None
    session_key = _session_key(scope)
    if token is None and session_key is None:
        return False
    try:
        return await _live(token, session_key)
    except DATABASE_UNAVAILABLE:
        return True  # Django's stack answers 503 itself


# What httptools, h11 and Twisted honour as a Content-Length, once they have parsed it.
_LENGTH = re.compile(rb"[ \t]*([0-9]+)[ \t]*")


def content_length(scope: dict) -> int | None:
    """Return the request's Content-Length as the servers read it, or None without one.

    Raise ValueError for a value no server would honour.
    """
    values = [value for key, value in scope.get("headers", ()) if key == b"content-length"]
    if not values:
        return None
    match = _LENGTH.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise ValueError("not a Content-Length")
    return int(match.group(1))  # ValueError past Python's 4300 digits


class AnonymousBodyLimit:
    """Refuse with 413, before reading it, a body over the limit of a request with no live credential."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.REALTIME_MAX_ANONYMOUS_BODY
        try:
            length = content_length(scope)
        except ValueError:
            await refuse(send, 400, "invalid", "The Content-Length header is not a number of bytes.")
            return
        if length is not None:
            if length > limit and not await has_live_credential(scope):
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
                if not await has_live_credential(scope):
                    await too_large(send, limit)
                    return
                break
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)


async def too_large(send, limit: int) -> None:
    """Answer 413 with the API's JSON error, and close the connection (the body is left unread)."""
    detail = f"Without a session or an API token a request body is limited to {limit} bytes."
    await refuse(send, 413, "too_large", detail)


async def refuse(send, status: int, code: str, detail: str) -> None:
    """Answer with the API's JSON error, and close the connection (the body is left unread)."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
