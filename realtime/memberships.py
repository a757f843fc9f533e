"""The live connections of this process and their channel-layer memberships.

Memberships never expire silently: every ``group_expiry / 2`` one task per
process renews the groups of every live connection. Leaving is the only
step of a connection's release that may wait (Redis), so it runs in a task
of its own: a cancelled connection still leaves its groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from . import metrics
from .process import loop_task, process, spawn
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

process.declare("connections", set)  # every admitted, not yet released connection


def hold(connection: Any) -> None:
    """Count ``connection`` as live, and keep its groups renewed."""
    process.connections.add(connection)
    layer = connection.layer
    loop_task("renew-groups", lambda: _renew(layer))


def drop(connection: Any) -> None:
    """Forget a released connection."""
    process.connections.discard(connection)


def count() -> int:
    """Return how many connections this process holds now."""
    return len(process.connections)


def leave(layer: Any, channel: str, groups: list[str]) -> None:
    """Leave ``groups`` in a task of its own; a layer that is down forgets them itself (group expiry)."""
    spawn(_leave(layer, channel, list(groups)))


async def _leave(layer: Any, channel: str, groups: list[str]) -> None:
    with contextlib.suppress(*REDIS_ERRORS):
        for group in groups:
            await layer.group_discard(group, channel)


async def _renew(layer: Any) -> None:
    """Re-add every live connection to its groups twice per ``group_expiry``, while any is live."""
    interval = max(0.5, getattr(layer, "group_expiry", 86400) / 2)
    while process.connections:
        await asyncio.sleep(interval)
        for connection in list(process.connections):
            for group in list(connection.groups):
                try:
                    await layer.group_add(group, connection.channel)
                except REDIS_ERRORS as exc:  # Redis down: the relay closes its sockets to resume
                    metrics.layer_error("renew")
                    logger.warning("renewing group %s failed: %r", group, exc)
                    break
