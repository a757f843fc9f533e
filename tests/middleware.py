"""A middleware that exists only in tests, to show MIDDLEWARE guards every transport."""

from django.http import HttpResponseForbidden


class RefuseBlockedHeaderMiddleware:
    """Refuse any request carrying ``X-Blocked``, the way an IP allow-list would."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "X-Blocked" in request.headers:
            return HttpResponseForbidden("blocked by a test middleware")
        return self.get_response(request)
