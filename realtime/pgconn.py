"""Telling, without a round trip, that PostgreSQL has ended an idle connection.

A connection at rest in autocommit has read every reply; the server sends
nothing more unasked, except when it ends the session (a restart's "terminating
connection due to administrator command", then EOF) or the network drops it (a
reset). So a socket that is readable while idle belongs to a connection that is
gone, and a poll with no timeout says so for the cost of one system call, where
psycopg_pool's ``check_connection`` or Django's ``is_usable()`` run a query.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg


def ended_by_server(conn: Any) -> bool:
    """Return whether the idle psycopg connection ``conn`` was closed or has unasked input (it ended)."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()  # not select.select: a busy server's descriptors pass 1024
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


async def check(conn: psycopg.AsyncConnection) -> None:
    """A psycopg_pool ``check`` for async pools: raise if the server ended ``conn``."""
    if ended_by_server(conn):
        raise psycopg.OperationalError("the server ended this connection")
