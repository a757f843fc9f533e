"""Answer a database outage with 503 instead of a 500 page."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """Turn a lost database connection into 503 (JSON under /api/ and /sse/); the next request retries."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Called when a view raised: answer 503 for database connection errors only."""
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
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
