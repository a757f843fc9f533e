"""One server process per database on the memory bus: a heartbeat in the event table, checked at start.

On the memory bus a server delivers its own publishes and the table's,
never another server's: two server processes on one database would each
serve half an app without a word. So each server process writes a
heartbeat row (group :data:`SERVING`) every :data:`HEARTBEAT_SECONDS`, and a
process about to serve (project.asgi) refuses to start while another one's
heartbeat is fresh (:data:`STALE_SECONDS`). A process that stops deletes its
heartbeats, so a restart is not refused; one killed on this host is seen
dead at once (its pid is gone); one killed elsewhere holds a start back for
at most STALE_SECONDS. A second process that started anyway (uvicorn
``--workers``, before either served) is logged as an error by the first
heartbeat that sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from . import bus
from .db import db_call, release_connections
from .models import BusEvent

logger = logging.getLogger(__name__)

SERVING = "realtime.serving"
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 15.0
# This process, as its heartbeats name it.
IDENTITY = {"type": SERVING, "host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def others() -> list[dict]:
    """Return the other server processes whose heartbeat in this database is fresh."""
    since = timezone.now() - timedelta(seconds=STALE_SECONDS)
    beats = BusEvent.objects.filter(created__gte=since, group=SERVING).values_list("payload", flat=True)
    found = {}
    for payload in beats:
        beat = json.loads(payload)
        if beat == IDENTITY or (beat["host"] == IDENTITY["host"] and not _alive(beat["pid"])):
            continue
        found[(beat["host"], beat["pid"])] = beat
    return list(found.values())


def describe(beats: list[dict]) -> str:
    """Return the processes of ``beats`` as text (pid on host)."""
    return ", ".join(f"pid {beat['pid']} on {beat['host']}" for beat in beats)


def require_single_server() -> None:
    """Raise ImproperlyConfigured if another server process serves this database on the memory bus."""
    if settings.REALTIME_BUS != bus.MEMORY:
        return
    try:
        found = others()
    except Exception:  # no table yet, or no database: what needs them says so; this checks one thing
        return
    finally:
        # Checked at start, on the main thread, which serves no request: a pooled connection
        # kept here would be one fewer for every request (a pool of 2 would leave none).
        release_connections()
    if found:
        raise ImproperlyConfigured(
            f"Another server process ({describe(found)}) serves this database with the in-process bus "
            "(REALTIME_BUS=memory): each would deliver only its own events, so their clients would not "
            "see each other's. Stop it, or run several processes with REALTIME_BUS=postgres "
            "(PostgreSQL) or REDIS_URL."
        )


def beat() -> list[dict]:
    """Write this process's heartbeat; return the other servers seen."""
    BusEvent.objects.create(created=timezone.now(), group=SERVING, payload=json.dumps(IDENTITY))
    return others()


def forget() -> None:
    """Delete this process's heartbeats (it stops serving)."""
    BusEvent.objects.filter(group=SERVING, payload=json.dumps(IDENTITY)).delete()


async def heartbeat_forever() -> None:
    """The heartbeat job of a server on the memory bus (see the module doc)."""
    warned = False
    try:
        while True:
            try:
                found = await db_call(beat)()
            except Exception as exc:  # the database may blink; next time
                logger.debug("event bus heartbeat failed: %r", exc)
                found = []
            if found and not warned:
                logger.error(
                    "Another server process (%s) serves this database with the in-process bus: "
                    "clients of one do not see the other's events. Run one, or set "
                    "REALTIME_BUS=postgres or REDIS_URL.",
                    describe(found),
                )
            warned = bool(found)
            await asyncio.sleep(HEARTBEAT_SECONDS)
    finally:
        with contextlib.suppress(Exception):  # stopping anyway: a stale beat expires by itself
            await asyncio.wait_for(db_call(forget)(), 2)
