"""The event bus through the database: which publishes become rows of the event table.

Three buses, chosen by ``settings.REALTIME_BUS`` (docs/deployment.md):

* ``memory`` (the default without ``REDIS_URL``): one server process and its
  in-process channel layer. A process that is not serving (``manage.py
  announce``, ``manage.py shell``, a cron job, a worker) cannot reach that
  layer, so its publishes are rows of the event table
  (:class:`realtime.models.BusEvent`); the server reads them
  (realtime.busreader) and hands them to its layer. The server itself
  publishes in memory, as it always did: no row, no query.
* ``postgres``: several server processes on one PostgreSQL database. Every
  publish is a row, written in the caller's transaction when it is inside
  one; NOTIFY wakes each process's one reader (realtime.pgbus).
* ``redis``: the Redis relay (realtime.relay); the table is not used.

A process is serving once the ASGI application has run (realtime.asgi
calls :func:`mark_serving`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.utils import timezone

MEMORY, POSTGRES, REDIS = "memory", "postgres", "redis"
# The LISTEN/NOTIFY channel: a wake-up only (empty payload); the rows carry the events.
CHANNEL = "realtime_bus"

# Set once this process serves the ASGI application; never unset.
serving = False


def mark_serving() -> None:
    """Note that this process serves clients: from now on, a memory bus publishes in memory."""
    global serving
    serving = True


def unserved() -> bool:
    """Return whether an async publish here must go through the table (memory bus, not serving)."""
    return not serving and settings.REALTIME_BUS == MEMORY


def writes_from_sync() -> bool:
    """Return whether a publish from synchronous code here is a row of the event table."""
    bus = settings.REALTIME_BUS
    return bus == POSTGRES or (bus == MEMORY and not serving)


def write(group: str, message: dict[str, Any]) -> None:
    """Store the layer message for ``group`` as a row (in the caller's transaction); wake the readers."""
    from .models import BusEvent

    alias = router.db_for_write(BusEvent)
    BusEvent.objects.using(alias).create(created=timezone.now(), group=group, payload=json.dumps(message))
    connection = connections[alias]
    if connection.vendor == "postgresql":
        # Sent at commit, and not at all on a rollback, like the row.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


async def awrite(group: str, message: dict[str, Any]) -> None:
    """Async :func:`write` (a worker's event loop, not a server's)."""
    await sync_to_async(write)(group, message)


def after_commit(send: Callable[[], None]) -> None:
    """Run ``send`` once the caller's transaction commits (never if it rolls back), or now outside one."""
    # Checked without opening a connection: transaction.on_commit() would open one to ask.
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        transaction.on_commit(send)
    else:
        send()
