"""Clear answers instead of Django's 500 and HTML 400 pages: a database outage, a body Django refuses."""

from __future__ import annotations

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.deprecation import MiddlewareMixin

from . import metrics
from .http import json_error

logger = logging.getLogger(__name__)


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
    try:  # psycopg's own, raised unwrapped by psycopg_pool (PoolTimeout is an OperationalError)
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.OperationalError, psycopg.InterfaceError)


# What the database raises while it cannot serve: down, restarting, or its pool exhausted
# (psycopg_pool.PoolTimeout, which Django wraps in django.db.OperationalError).
DATABASE_UNAVAILABLE = _unavailable_errors()


def database_unavailable(request: HttpRequest, exception: BaseException) -> HttpResponse:
    """Return the 503 that answers a database outage (JSON under /api/ and /sse/)."""
    logger.warning("database unavailable for %s: %s", request.path, exception)
    metrics.database_unavailable("http")
    if request.path.startswith(("/api/", "/sse/")):
        response = JsonResponse(
            {"error": "unavailable", "detail": "The database is unavailable; retry."}, status=503
        )
    else:
        response = HttpResponse(
            "The database is unavailable; retry shortly.", status=503, content_type="text/plain"
        )
    response["Retry-After"] = "2"
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """Turn a lost database connection into 503 (JSON under /api/ and /sse/); the next request retries.

    It sees what views raise. Django turns what a middleware raises into a
    500 before any other middleware sees it, so the middleware that query
    the database catch these errors themselves (realtime.auth), answering
    with :func:`database_unavailable`.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Called when a view raised: answer 503 for database connection errors only."""
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        return database_unavailable(request, exception)


# What Django raises while it parses a body it refuses, and the API's answer to each.
_BODY_ERRORS: dict[type[Exception], tuple[str, str, int]] = {
    RequestDataTooBig: ("too_large", "The body is over DATA_UPLOAD_MAX_MEMORY_SIZE.", 413),
    TooManyFieldsSent: ("too_large", "The body has more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS.", 413),
    TooManyFilesSent: ("too_large", "The body has more files than DATA_UPLOAD_MAX_NUMBER_FILES.", 413),
    MultiPartParserError: ("invalid", "The multipart body cannot be parsed.", 400),
    # A form body declared in another charset than UTF-8.
    BadRequest: ("invalid", "The form body cannot be parsed.", 400),
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class ApiBodyErrorsMiddleware:
    """Under /api/, a form body Django refuses to parse is a JSON 400 or 413, never an HTML page.

    Django parses ``request.POST`` on first use and raises on too many
    fields, too large a body or a broken multipart body; raised from
    ``CsrfViewMiddleware`` (which reads the form's token) or a view, that
    becomes Django's HTML 400 page. This parses the form bodies of POSTs
    under /api/ first, in the request's thread, and answers the contract's
    error instead. Other bodies (JSON) are read by the views, which answer
    their own errors (realtime.http.json_body).

    The body is read into memory before it is parsed, so it stays readable
    afterwards: Django parses a multipart body straight from the stream,
    and a view that then reads ``request.body`` (any JSON endpoint sent a
    form) would raise ``RawPostDataException``, a 500. The JSON API takes no
    multipart files (an app that stores files streams them otherwise), so
    the whole body is held to ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
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
        if self.parses(request):
            return self.parse(request) or self.get_response(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if self.parses(request):
            refusal = await sync_to_async(self.parse)(request)
            if refusal is not None:
                return refusal
        return await self.get_response(request)

    @staticmethod
    def parses(request: HttpRequest) -> bool:
        """Return whether ``request`` is a form POST under /api/ (cheap: no body read)."""
        return (
            request.method == "POST"
            and request.path.startswith("/api/")
            and request.content_type in FORM_TYPES
        )

    @staticmethod
    def parse(request: HttpRequest) -> HttpResponse | None:
        """Parse the form body now; return the JSON error if Django refuses it."""
        try:
            request.body  # noqa: B018 - buffered first: the parse below must not consume the stream
            request.POST  # noqa: B018 - parsed and cached for the CSRF check and the view
        except tuple(_BODY_ERRORS) as exc:
            code, detail, status = next(v for k, v in _BODY_ERRORS.items() if isinstance(exc, k))
            return json_error(code, detail, status)
        return None
