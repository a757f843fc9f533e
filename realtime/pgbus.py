"""The PostgreSQL bus: several server processes act as one app with the database alone.

``REALTIME_BUS=postgres``. Each process keeps its sockets in the in-process
layer it subclasses (inline delivery, the same capacity rules), and
``group_send`` writes a row of the event table instead of delivering: every
process, the sender's included, reads the rows after its cursor and hands
them to its local members, so all of them see one order, the table's.

* Writing: one connection per process (per event loop) for the publishes
  of async code; those waiting at once go in one INSERT with one NOTIFY
  (a wake-up with an empty payload, never the carrier: NOTIFY payloads are
  small and a notifying transaction takes a global lock at commit).
  Synchronous code writes its row on its own connection, in its own
  transaction (realtime.bus.write).
* Reading: ONE listening connection per process, not per client: LISTEN on
  one channel, then the rows after the cursor whenever a NOTIFY arrives, or
  every ``REALTIME_BUS_POLL_SECONDS`` if none does (a NOTIFY lost with a
  connection). Ids skipped because their transaction had not committed yet
  are read again for a few seconds (realtime.busreader.Cursor).
* A lost connection (PostgreSQL restarted) is made again every half
  second; the reader resumes from its cursor, so events committed meanwhile
  are delivered late, not lost. Publishes fail while the database is down
  (as the queries storing the messages do).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections, router

from . import bus
from .busreader import BATCH, MAX_GAPS, RETRY_SECONDS, Cursor, deliver_rows
from .layers import FastInMemoryChannelLayer
from .models import BusEvent

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3


def conninfo() -> str:
    """Return the libpq connection string of the event table's database."""
    database = settings.DATABASES[router.db_for_write(BusEvent)]
    options = database.get("OPTIONS", {})
    params = {
        "dbname": database.get("NAME"),
        "user": database.get("USER"),
        "password": database.get("PASSWORD"),
        "host": database.get("HOST"),
        "port": database.get("PORT"),
        "sslmode": options.get("sslmode"),
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "realtime-bus",
    }
    return psycopg.conninfo.make_conninfo(**{key: value for key, value in params.items() if value})


def _table() -> tuple[str, str]:
    """Return the quoted event table and its column list (id, group, payload)."""
    quote = connections[router.db_for_write(BusEvent)].ops.quote_name
    return quote(BusEvent._meta.db_table), f"id, {quote('group')}, payload"


class PostgresBusChannelLayer(FastInMemoryChannelLayer):
    """The in-process layer whose group_send goes through the event table to every process."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._writer: _Writer | None = None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Write the message for ``group`` to the event table; every process's reader delivers it."""
        self.require_valid_group_name(group)
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.loop is not loop:
            self._writer = _Writer(loop)
        await self._writer.write(group, message)

    async def deliver(self, group: str, message: dict[str, Any]) -> None:
        """Hand a message read from the table to this process's members of ``group``."""
        await super().group_send(group, message)

    async def listen(self) -> None:
        """Read the event table for ever (this process's one reader; realtime.busreader runs it)."""
        table, columns = _table()
        after = f"SELECT {columns} FROM {table} WHERE id > %s ORDER BY id LIMIT {BATCH}"
        again = f"SELECT {columns} FROM {table} WHERE id = ANY(%s)"
        cursor: Cursor | None = None
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {bus.CHANNEL}")
                    if cursor is None:  # a new process starts at the end; a reconnected one resumes
                        cursor = await _start(conn, table)
                    if failures:
                        logger.warning("event bus: reading again from id %d", cursor.last)
                    failures = 0
                    poll = settings.REALTIME_BUS_POLL_SECONDS
                    while True:
                        rows = await (await conn.execute(after, [cursor.last])).fetchall()
                        if cursor.gaps:
                            rows += await (await conn.execute(again, [list(cursor.gaps)])).fetchall()
                        await deliver_rows(cursor, rows, self.deliver)
                        if len(rows) >= BATCH:
                            continue
                        # Woken by a NOTIFY (those received meanwhile are kept), else polling.
                        async for _ in conn.notifies(timeout=poll, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as exc:
                if not failures:
                    logger.error("event bus: the listening connection failed (%r); reconnecting", exc)
                failures += 1
                await asyncio.sleep(RETRY_SECONDS)


async def _start(conn: psycopg.AsyncConnection, table: str) -> Cursor:
    """Return a new reader's cursor: at the last id, the ids missing below it read again for a while."""
    row = await (await conn.execute(f"SELECT MAX(id) FROM {table}")).fetchone()
    last = row[0] or 0
    below = await (await conn.execute(f"SELECT id FROM {table} WHERE id > %s", [last - MAX_GAPS])).fetchall()
    return Cursor.at_end(last, (r[0] for r in below), time.monotonic())


class _Writer:
    """One connection that writes the publishes of one event loop, as many per INSERT as are waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[tuple[str, str, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.conn: psycopg.AsyncConnection | None = None
        self.task = loop.create_task(self._run(), name="realtime-bus-writer")
        table, columns = _table()
        # One statement: the rows in publish order, and one wake-up for all of them.
        self.sql = (
            f"WITH rows AS (INSERT INTO {table} (created, {columns.split(', ')[1]}, payload) "
            "SELECT now(), g, p FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(g, p, n) "
            f"ORDER BY n RETURNING 1) SELECT pg_notify('{bus.CHANNEL}', '')"
        )

    async def write(self, group: str, message: dict[str, Any]) -> None:
        """Queue the row and wait until it is committed (or raise why it was not)."""
        future = self.loop.create_future()
        self.pending.append((group, json.dumps(message), future))
        self.wake.set()
        if self.task.done():  # cancelled with its loop's tasks (tests reset the process)
            self.task = self.loop.create_task(self._run(), name="realtime-bus-writer")
        await future

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
                error = await self._insert([b[0] for b in batch], [b[1] for b in batch])
                for _, _, future in batch:
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

    async def _insert(self, groups: list[str], payloads: list[str]) -> Exception | None:
        """Insert the rows; return the error if that failed twice (once may be a connection gone stale)."""
        for attempt in (1, 2):
            fresh = self.conn is None or self.conn.closed
            try:
                if fresh:
                    self.conn = await psycopg.AsyncConnection.connect(conninfo(), autocommit=True)
                await self.conn.execute(self.sql, [groups, payloads])
                return None
            except (psycopg.Error, OSError) as exc:
                if self.conn is not None:
                    await self.conn.close()
                self.conn = None
                # A connection that broke while idle (PostgreSQL restarted) fails once: try a new one.
                if fresh or attempt == 2:
                    return exc
        return None
