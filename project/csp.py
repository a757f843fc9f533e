"""Django 5.2's stand-in for Django 6.0's ContentSecurityPolicyMiddleware: the same header, same setting.

settings.py picks Django's own middleware from 6.0 on, and this one on 5.2, which has none.
It reads ``SECURE_CSP`` and writes ``Content-Security-Policy`` as Django 6's does, for what a
policy of source lists needs (no nonces, no report-only header). Like Django 6, it leaves
Django's debug pages alone: under DEBUG they carry inline styles and scripts. Delete this
module, and the branch in settings.py, when the project leaves Django 5.2.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def build_policy(config: dict) -> str:
    """Return the header value for a ``SECURE_CSP`` dict, written as Django 6's build_policy writes it."""
    directives = []
    for directive, values in config.items():
        if values is None or values is False:
            continue
        if values is True:
            directives.append(directive)
            continue
        if isinstance(values, str):
            values = [values]
        elif isinstance(values, set):
            values = sorted(values)
        if values:
            directives.append(f"{directive} {' '.join(values)}")
    return "; ".join(directives)


def is_debug_page(response: HttpResponse) -> bool:
    """Return whether ``response`` may be one of Django's debug pages (404 or 500, under DEBUG)."""
    return (
        settings.DEBUG
        and response.status_code in (404, 500)
        and response.get("Content-Type", "").startswith("text/html")
    )


class ContentSecurityPolicyMiddleware:
    """Set ``SECURE_CSP``'s policy on every response that has none of its own.

    Async in an async chain, sync in a sync one: setting a header needs no
    thread, so unlike ``MiddlewareMixin`` it never hops to one.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        return self.process_response(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return self.process_response(request, await self.get_response(request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Add the policy header to ``response`` unless it has one, or is a debug page."""
        config = getattr(settings, "SECURE_CSP", None)
        if config and HEADER not in response and not is_debug_page(response):
            response.headers[HEADER] = build_policy(config)
        return response
