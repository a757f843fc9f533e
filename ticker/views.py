"""The dashboard page and the latest snapshot over HTTP."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from realtime import api

from .topic import SYMBOLS, TickerTopic, latest


@api("GET", topic=TickerTopic)
async def snapshot(request: HttpRequest, user, topic: TickerTopic) -> JsonResponse:
    """Return the latest prices: the same seq the WebSocket and SSE clients see now."""
    return JsonResponse(await latest())


@login_required
async def dashboard(request: HttpRequest) -> HttpResponse:
    """Render the dashboard; its script goes live over WebSocket, or SSE."""
    context = {"symbols": SYMBOLS, "snapshot": await latest()}
    return await sync_to_async(render)(request, "ticker/dashboard.html", context)
