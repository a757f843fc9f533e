"""The page header's navigation: the pages each installed app declares, and the home page.

An app lists its pages on its AppConfig, as (label, URL name) pairs::

    class BoardConfig(AppConfig):
        name = "board"
        realtime_pages = [("Board", "board")]  # the URL name of its page

``templates/base.html`` shows them in ``INSTALLED_APPS`` order (the context
processor :func:`pages`), so installing an app adds its link and removing it
takes the link away. ``/`` is the first page, or a page saying no app is
installed yet.
"""

from __future__ import annotations

import logging

from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

logger = logging.getLogger(__name__)

# The AppConfig attribute an app declares its pages in.
ATTRIBUTE = "realtime_pages"


def declared_pages() -> list[tuple[str, str]]:
    """Return the (label, URL name) pairs every installed app declares, in INSTALLED_APPS order."""
    return [page for config in apps.get_app_configs() for page in getattr(config, ATTRIBUTE, ())]


def pages(request: HttpRequest) -> dict:
    """Context processor: ``nav_pages``, each page as {"label", "url", "current"}."""
    found = []
    for page in declared_pages():
        label, url_name = page
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            # An app installed without its URLs: the header leaves its page out, and says why.
            logger.warning("The page %r (URL name %r) has no URL: is its app's include() missing?", *page)
            continue
        found.append({"label": label, "url": url, "current": request.path == url})
    return {"nav_pages": found}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send ``/`` to the first app page; without one, say how to add an app."""
    declared = declared_pages()
    if declared:
        return redirect(declared[0][1])
    return render(request, "realtime/home.html")
