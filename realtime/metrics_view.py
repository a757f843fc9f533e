"""``GET /metrics``: this process's metrics in the Prometheus text format, for allowed addresses only.

Each server process answers for itself (docs/operations.md: one endpoint
per process, scraped one by one). The endpoint is anonymous, so it is
guarded by the caller's address instead: loopback by default, or the
addresses and networks ``REALTIME_METRICS_ALLOWED_IPS`` lists (a comma
list of IPs and CIDRs). Anyone else gets the JSON 404 of an unknown URL,
so the endpoint does not even show that it exists. Behind a proxy on the
same host every request comes from loopback: the shipped nginx config
refuses ``/metrics`` itself (docs/nginx/realtime.conf).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from . import metrics as core_metrics
from . import topics
from .http import json_error
from .process import process

logger = logging.getLogger(__name__)

DEFAULT_ALLOWED = "127.0.0.1,::1"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Scrapes:
    """This process's side of the scrapes."""

    prepared: bool = False  # the usual series created at zero


process.declare("metrics_view", _Scrapes)


@functools.lru_cache(maxsize=8)
def allowed_networks(setting: str) -> tuple[Network, ...]:
    """Parse a comma list of IPs and CIDRs (``"127.0.0.1,::1,10.0.0.0/8"``); skip, and log, bad entries."""
    networks = []
    for entry in setting.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("REALTIME_METRICS_ALLOWED_IPS: ignoring %r, not an IP address or network", entry)
    return tuple(networks)


def address_allowed(address: str | None) -> bool:
    """Return whether a client at ``address`` may read the metrics."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address: its zone dropped
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    networks = allowed_networks(getattr(settings, "REALTIME_METRICS_ALLOWED_IPS", DEFAULT_ALLOWED))
    return any(ip in network for network in networks)


@login_not_required  # anonymous, restricted by address (LoginRequiredMiddleware must not redirect it)
async def metrics(request: HttpRequest) -> HttpResponse:
    """Answer the scrape of this process; a JSON 404 for a caller not allowed, or with metrics off."""
    if not core_metrics.enabled or not address_allowed(request.META.get("REMOTE_ADDR")):
        return json_error("not_found", "No such endpoint.", 404)
    if request.method not in ("GET", "HEAD"):
        response = json_error("method_not_allowed", "Use GET.", 405)
        response["Allow"] = "GET, HEAD"
        return response
    scrapes = process.metrics_view
    if not scrapes.prepared:  # once the apps' topics are loaded: their series start at zero
        core_metrics.prepare(topics.kinds())
        scrapes.prepared = True
    # prometheus_client's own negotiation: the text format (0.0.4) unless the scraper asks for
    # OpenMetrics or text 1.0.0 in its Accept header.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(REGISTRY), content_type=content_type)
