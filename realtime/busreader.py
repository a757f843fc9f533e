"""Reading the event table: a server hands new rows to its channel layer, and keeps the table short.

One reader per server process (a background job, realtime.background)
reads the rows after its cursor, ``WHERE id > cursor``, one indexed query,
and hands each to its layer's local ``group_send``. On the memory bus it
polls every ``REALTIME_BUS_POLL_SECONDS`` (SQLite has no wake-up to offer);
the postgres bus wakes it with LISTEN/NOTIFY (realtime.pgbus).

Ids are given out at INSERT and become visible at COMMIT, so a row may
appear after a higher id was read. The :class:`Cursor` remembers the ids it
skipped and reads them again for :data:`GAP_SECONDS` before giving them up
(a rolled-back insert leaves a hole for good). A row whose event id was
delivered to its group a moment ago is skipped (a retried publish).

A second job deletes rows older than ``REALTIME_BUS_RETENTION_SECONDS``, in
batches, by the index on ``created``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, router
from django.utils import timezone

from . import background, bus
from .db import db_call
from .models import BusEvent

logger = logging.getLogger(__name__)

# Seconds a skipped id is read again before it is given up (a transaction still open, or rolled back).
GAP_SECONDS = 5.0
# Skipped ids remembered at most (a jump of a sequence is not a backlog of transactions).
MAX_GAPS = 1000
# Rows read per query; a full batch is followed by the next one at once.
BATCH = 500
DELETE_BATCH = 1000
RETRY_SECONDS = 0.5
# Seconds an event id delivered to a group is remembered, to skip a second row of it.
DEDUP_SECONDS = 10.0

Row = tuple[int, str, str]  # id, group, payload
Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


class Cursor:
    """The last id read, the lower ids not seen yet, the event ids delivered lately (see the module doc)."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.gaps: dict[int, float] = {}  # id -> when to give it up (monotonic)
        self.recent: set[tuple[str, int]] = set()  # (group, event id) delivered in the last DEDUP_SECONDS
        self.recent_order: deque[tuple[float, tuple[str, int]]] = deque()

    @classmethod
    def at_end(cls, last: int, present: Iterable[int], now: float) -> Cursor:
        """Return a starting reader's cursor at id ``last``, watching the ids under it not visible yet.

        ``present`` holds the ids of the :data:`MAX_GAPS` below ``last`` that
        are in the table. A missing one may be a transaction still open, which
        commits after this reader started: read again, as any skipped id.
        """
        cursor = cls(last)
        seen = set(present)
        for missing in range(max(last - MAX_GAPS, 0) + 1, last):
            if missing not in seen:
                cursor.gaps[missing] = now + GAP_SECONDS
        return cursor

    def duplicate(self, group: str, message: dict[str, Any], now: float) -> bool:
        """Return whether ``message`` carries an event id this reader delivered to ``group`` lately.

        At least once: a publish retried after its connection failed may
        have been stored twice, as two rows with one event id.
        """
        event_id = message.get("id")
        if event_id is None:
            return False
        while self.recent_order and self.recent_order[0][0] < now:
            self.recent.discard(self.recent_order.popleft()[1])
        key = (group, event_id)
        if key in self.recent:
            return True
        self.recent.add(key)
        self.recent_order.append((now + DEDUP_SECONDS, key))
        return False

    def accept(self, rows: list[Row], now: float) -> list[Row]:
        """Return the rows not delivered yet, in id order; note the ids skipped."""
        fresh = []
        for row in sorted(rows):
            row_id = row[0]
            if row_id > self.last:
                space = MAX_GAPS - len(self.gaps)
                for missing in range(self.last + 1, min(row_id, self.last + 1 + max(space, 0))):
                    self.gaps[missing] = now + GAP_SECONDS
                self.last = row_id
                fresh.append(row)
            elif self.gaps.pop(row_id, None) is not None:
                fresh.append(row)
        if self.gaps:
            for gap in [gap for gap, until in self.gaps.items() if until < now]:
                del self.gaps[gap]
        return fresh


def _sql(alias: str) -> tuple[str, str, str]:
    """Return the SELECTs of the rows after an id, of some ids, and of the last id."""
    quote = connections[alias].ops.quote_name
    table = quote(BusEvent._meta.db_table)
    columns = f"{quote('id')}, {quote('group')}, {quote('payload')}"
    return (
        f"SELECT {columns} FROM {table} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT {BATCH}",
        f"SELECT {columns} FROM {table} WHERE {quote('id')} IN ",
        f"SELECT MAX({quote('id')}) FROM {table}",
    )


def last_id() -> int:
    """Return the highest id in the table (0 when empty): a new reader starts there."""
    alias = router.db_for_read(BusEvent)
    with connections[alias].cursor() as cursor:
        cursor.execute(_sql(alias)[2])
        return cursor.fetchone()[0] or 0


def read_rows(after: int, gaps: list[int]) -> list[Row]:
    """Return the rows after ``after`` (one batch) and those of the ``gaps`` ids that exist now."""
    alias = router.db_for_read(BusEvent)
    after_sql, ids_sql, _ = _sql(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(after_sql, [after])
        rows = list(cursor.fetchall())
        if gaps:
            cursor.execute(ids_sql + "(" + ", ".join(["%s"] * len(gaps)) + ")", gaps)
            rows.extend(cursor.fetchall())
    return rows


async def deliver_rows(cursor: Cursor, rows: list[Row], deliver: Deliver) -> None:
    """Hand the rows the cursor has not delivered yet to ``deliver``, in id order."""
    now = time.monotonic()
    for _, group, payload in cursor.accept(rows, now):
        try:
            message = json.loads(payload)
        except ValueError:
            logger.error("event bus: a row that is not JSON was skipped")
            continue
        if not cursor.duplicate(group, message, now):
            await deliver(group, message)


async def poll(deliver: Deliver) -> None:
    """Read the table every REALTIME_BUS_POLL_SECONDS and deliver new rows (the memory bus's reader)."""
    cursor: Cursor | None = None
    failing = False
    while True:
        try:
            if cursor is None:
                cursor = Cursor(await db_call(last_id)())
            rows = await db_call(read_rows)(cursor.last, list(cursor.gaps))
            await deliver_rows(cursor, rows, deliver)
            failing = False
        except Exception as exc:  # the database may blink: keep the cursor, try again
            if not failing:
                logger.warning("event bus: reading the event table failed; retrying: %r", exc)
            failing = True
            rows = []
        if len(rows) < BATCH:
            await asyncio.sleep(settings.REALTIME_BUS_POLL_SECONDS if not failing else RETRY_SECONDS)


async def read_forever() -> None:
    """The reader job: hand every new row of the event table to this process's channel layer."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    listen = getattr(layer, "listen", None)  # the postgres bus reads with its own connection
    await (listen() if listen is not None else poll(layer.group_send))


def delete_old() -> int:
    """Delete the rows older than REALTIME_BUS_RETENTION_SECONDS, a batch at a time; return how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.REALTIME_BUS_RETENTION_SECONDS)
    deleted = 0
    while True:
        old = BusEvent.objects.filter(created__lt=cutoff).order_by("created")
        ids = list(old.values_list("id", flat=True)[:DELETE_BATCH])
        if not ids:
            return deleted
        deleted += BusEvent.objects.filter(id__in=ids).delete()[0]


async def trim_forever() -> None:
    """The retention job: keep the event table bounded by age."""
    every = min(60.0, max(1.0, settings.REALTIME_BUS_RETENTION_SECONDS / 4))
    while True:
        try:
            await db_call(delete_old)()
        except Exception as exc:  # the database may blink; next time
            logger.warning("event bus: trimming the event table failed: %r", exc)
        await asyncio.sleep(every)


def register_jobs() -> None:
    """Run the reader and the retention job in every server process of a bus through the table."""
    if settings.REALTIME_BUS in (bus.MEMORY, bus.POSTGRES):
        background.register("realtime-bus-reader", read_forever)
        background.register("realtime-bus-retention", trim_forever)
    if settings.REALTIME_BUS == bus.MEMORY:
        from .busguard import heartbeat_forever

        background.register("realtime-bus-heartbeat", heartbeat_forever)
