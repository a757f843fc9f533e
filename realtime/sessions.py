"""Session engine whose deleted sessions end their live connections at once.

A session is deleted by logout (``flush``), by a login as someone else in
the same browser (``flush``), by a password change or a login that cycles
the key (``cycle_key`` deletes the old key), and by ``clearsessions``
(``clear_expired``). Each deletion sends the CLOSE notice 4401 to the
connections opened with that key (realtime.events.session_group), so they
close within a second: a copy of the cookie keeps no socket. The page that
changed the password reconnects with its new cookie by itself
(realtime/static/realtime/live-client.js). A deletion in another process
(a command, a worker) reaches the server through the bus (realtime.bus).
A session that merely expires ends its connections at their next
credential check (REALTIME_REVALIDATE_SECONDS, realtime.credentials).
Select it with ``SESSION_ENGINE``.
"""

from __future__ import annotations

import functools
import logging

from asgiref.sync import async_to_sync
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.db import connections, router, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

# Expired sessions deleted (and their connections told) per query by clear_expired.
CLEAR_BATCH = 1000


class SessionStore(DbSessionStore):
    """Database sessions that end their connections when deleted, and load in one prepared query."""

    def _get_session_from_db(self):
        """Return the session's row if it has not expired, else None (and forget the key).

        Django's version builds ``objects.get(session_key=..., expire_date__gt=now)``
        on each call, which costs several times what running the query raw
        does, and every WebSocket handshake loads a session (measured:
        bench/README.md, What changed, and what each change bought).
        """
        model = self.model
        alias = router.db_for_read(model)
        connection = connections[alias]
        sql = _session_sql(model, alias)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.session_key, now])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=self.session_key, session_data=row[0])

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session (flush, cycle_key, logout); its connections close with 4401."""
        key = session_key or self.session_key
        super().delete(session_key)
        if key:
            sessions_ended([key])

    async def adelete(self, session_key: str | None = None) -> None:
        """Async :meth:`delete`."""
        key = session_key or self.session_key
        await super().adelete(session_key)
        if key:
            await _close_connections([key])

    @classmethod
    def clear_expired(cls) -> None:
        """Delete the expired sessions (``manage.py clearsessions``), telling their connections."""
        model = cls.get_model_class()
        now = timezone.now()
        while True:
            expired = model.objects.filter(expire_date__lt=now)
            keys = list(expired.values_list("session_key", flat=True)[:CLEAR_BATCH])
            if not keys:
                return
            model.objects.filter(session_key__in=keys).delete()
            sessions_ended(keys)


def sessions_ended(keys: list[str]) -> None:
    """Send CLOSE 4401 to the connections opened with these session keys, once the deletion commits.

    Sync code: from a request's thread, the realtime DB thread or a
    management command (one not serving reaches the server through the bus).
    """
    from . import bus, events
    from .codes import SESSION_ENDED

    keys = list(keys)
    if bus.writes_from_sync():  # rows of the event table, in the caller's transaction
        for key in keys:
            bus.write(events.session_group(key), {"type": events.CLOSE, "code": SESSION_ENDED})
        return
    transaction.on_commit(lambda: async_to_sync(_close_connections)(keys), robust=True)


async def _close_connections(keys: list[str]) -> None:
    from . import events
    from .codes import SESSION_ENDED
    from .services import LAYER_ERRORS

    for key in keys:
        try:
            await events.notify(events.session_group(key), events.CLOSE, code=SESSION_ENDED)
        except LAYER_ERRORS as exc:  # the periodic credential check closes them instead
            logger.warning("could not tell the connections of an ended session: %s", exc)
            return


@functools.cache
def _session_sql(model: type, alias: str) -> str:
    """Return the SELECT of a live session's data by key (built once per model and database)."""
    quote = connections[alias].ops.quote_name
    fields = ("session_key", "session_data", "expire_date")
    column = {name: quote(model._meta.get_field(name).column) for name in fields}
    return (
        f"SELECT {column['session_data']} FROM {quote(model._meta.db_table)} "
        f"WHERE {column['session_key']} = %s AND {column['expire_date']} > %s"
    )
