"""The tus endpoints and the attachment download, behind the project's one MIDDLEWARE.

Identity is the session (browsers send ``X-CSRFToken``, as for every unsafe
method) or a bearer token (no CSRF); without one the answer is a 401 JSON.

How a PATCH body reaches the disk: Django's ASGI handler (5.2,
``ASGIHandler.read_body``) receives the whole body into a
``SpooledTemporaryFile`` before any middleware runs, in memory up to
``FILE_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB) and on disk beyond. The view then
copies it to the partial file with ``request.read(64 KiB)`` in a worker
thread, so neither a chunk nor the file is ever held in memory
(bench/upload_memory.py measures it). The cost: a chunk is written twice,
and a chunk cut off mid-way is lost; clients send chunks of a few MiB.
"""

from __future__ import annotations

import asyncio
import functools

from django.http import HttpRequest, HttpResponse

from realtime import ClientError, api, json_error

from . import files, protocol, service


def tus_endpoint(*methods: str):
    """Make an async view a tus endpoint: OPTIONS, identity, Tus-Resumable in and out, JSON errors."""
    allowed = (*methods, "OPTIONS")

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = await _dispatch(view, allowed, request, *args, **kwargs)
            response["Tus-Resumable"] = protocol.TUS_VERSION
            if request.method == "HEAD":
                response.content = b""  # a HEAD answer has headers only, errors too
            return response

        return wrapper

    return decorate


async def _dispatch(view, allowed: tuple[str, ...], request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Answer OPTIONS, refuse what tus or identity forbids, else run ``view``."""
    if request.method not in allowed:
        response = json_error("method_not_allowed", f"Use {' or '.join(allowed)}.", 405)
        response["Allow"] = ", ".join(allowed)
        return response
    if request.method == "OPTIONS":  # discovery needs no identity (tus 1.0)
        response = _empty(204)
        for name, value in protocol.server_headers().items():
            response[name] = value
        return response
    user = await request.auser()
    if not (user.is_authenticated and user.is_active):
        return json_error("unauthorized", "Log in or send 'Authorization: Bearer <token>'.", 401)
    try:
        protocol.check_version(request.headers.get("Tus-Resumable"))
        return await view(request, user, *args, **kwargs)
    except ClientError as exc:
        response = json_error(exc.code, exc.detail, exc.http_status)
        if exc.http_status == 412:
            response["Tus-Version"] = protocol.TUS_VERSION
        return response


def _empty(status: int) -> HttpResponse:
    """Return a response whose meaning is all in its status and headers."""
    response = HttpResponse(status=status)
    del response["Content-Type"]
    return response


@tus_endpoint("POST")
async def uploads(request: HttpRequest, user) -> HttpResponse:
    """Create an upload (tus creation): 201 with its URL in Location."""
    length = protocol.parse_int("Upload-Length", request.headers.get("Upload-Length"))
    metadata = protocol.parse_metadata(request.headers.get("Upload-Metadata"))
    upload = await service.upload_create(user=user, length=length, metadata=metadata)
    response = _empty(201)
    # Relative (tus allows it): right behind any proxy, whatever scheme it terminates.
    response["Location"] = f"{request.path.rstrip('/')}/{upload.public_id}"
    return response


@tus_endpoint("HEAD", "PATCH", "DELETE")
async def upload(request: HttpRequest, user, upload_id: str) -> HttpResponse:
    """Report (HEAD), append to (PATCH) or terminate (DELETE) one of the caller's uploads."""
    upload = await service.upload_get(user=user, upload_id=upload_id)
    if request.method == "DELETE":
        await service.upload_terminate(upload=upload)
        return _empty(204)
    if request.method == "PATCH":
        if request.content_type != protocol.OFFSET_CONTENT_TYPE:
            raise protocol.UploadError(
                "unsupported_media_type", f"Send 'Content-Type: {protocol.OFFSET_CONTENT_TYPE}'.", 415
            )
        offset = protocol.parse_int("Upload-Offset", request.headers.get("Upload-Offset"))
        raw_length = request.headers.get("Content-Length")
        length = protocol.parse_int("Content-Length", raw_length) if raw_length else None
        checksum = protocol.parse_checksum(request.headers.get("Upload-Checksum"))
        upload = await service.upload_append(
            user=user, upload=upload, offset=offset, read=request.read, length=length, checksum=checksum
        )
        response = _empty(204)
    else:
        response = _empty(200)
        response["Upload-Length"] = str(upload.size)
        response["Cache-Control"] = "no-store"
    response["Upload-Offset"] = str(upload.offset)
    return response


@api("GET")
async def upload_file(request: HttpRequest, user, upload_id: str) -> HttpResponse:
    """Serve a finished attachment, streamed, to those who may read its room."""
    upload = await service.upload_for_download(user=user, upload_id=upload_id)
    return await asyncio.to_thread(files.file_response, upload)
