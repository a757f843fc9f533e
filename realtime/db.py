"""Database work from async code: one long-lived worker thread, its connection kept.

Handshakes (realtime.handshake) and the chat service (realtime.chat) run
their ORM calls through :func:`db_call`, each call one hop to a single
worker thread:

* The hop is lean: a queue put, and one ``call_soon_threadsafe`` back.
  ``sync_to_async`` also copies and restores context variables and chains
  a ``concurrent.futures.Future`` (with its lock) to an asyncio one, about
  as much work again as a small query; these calls need neither, since the
  worker thread has its own database connection and Django ``Local`` state.
* ``CONN_MAX_AGE`` is 0 because under ASGI a request's thread dies with the
  request. This thread lives as long as the process, so a SQLite
  connection, a file handle with nothing to give back, is kept between
  calls: opening one costs about 0.6 ms here (Django registers its SQL
  functions and runs the init command each time), more than a handshake's
  queries. Other databases are released after every call, as Channels'
  ``database_sync_to_async`` does (PostgreSQL hands them back to its pool).
* Before each call other databases' connections are checked as at a
  request's start (``close_if_unusable_or_obsolete``), so a database
  restart costs one failed call, not a dead thread; a SQLite connection
  left inside a transaction is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.db import connections

logger = logging.getLogger(__name__)
R = TypeVar("R")

_jobs: queue.SimpleQueue = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def db_call(func: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """Return an async version of ``func`` (sync ORM code) that runs it on the realtime DB thread."""

    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        _start_thread()
        _jobs.put((loop, future, functools.partial(func, *args, **kwargs)))
        return await future

    return call


def _start_thread() -> None:
    global _thread
    if _thread is None:
        with _thread_lock:
            if _thread is None:
                # A daemon: it holds no state worth a clean stop (SQLite needs no goodbye).
                _thread = threading.Thread(target=_work, name="realtime-db", daemon=True)
                _thread.start()


def _work() -> None:
    """The worker thread: run each call with connections checked before and released after."""
    while True:
        loop, future, call = _jobs.get()
        result = error = None
        try:
            _check_connections()
            result = call()
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        finally:
            try:
                _release_connections()
            except Exception:  # a broken connection failing to close; the next check drops it
                logger.warning("closing a database connection failed", exc_info=True)
        with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _check_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.vendor != "sqlite":
            conn.close_if_unusable_or_obsolete()
        elif conn.connection is not None and not conn.get_autocommit():
            conn.close()  # a call left a transaction open: start from a clean connection


def _release_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.vendor != "sqlite":  # SQLite's is kept (see the module docstring)
            conn.close_if_unusable_or_obsolete()
