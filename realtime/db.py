"""Database work from async code: one long-lived worker thread, its connection kept.

Handshakes (realtime.handshake), credential checks (realtime.credentials)
and the apps' database functions run their ORM calls through
:func:`db_call`, each call one hop to a single worker thread:

* The hop is lean: a queue put, and at most one ``call_soon_threadsafe`` back.
  Results go back in batches: a result finished while the loop has not yet
  taken the previous ones joins them, without another wake-up (a write to
  the loop's self-pipe, a system call; in a burst of handshakes most
  results are handed back this way).
  ``sync_to_async`` also copies and restores context variables and chains
  a ``concurrent.futures.Future`` (with its lock) to an asyncio one, about
  as much work again as a small query; these calls need neither, since the
  worker thread has its own database connection and Django ``Local`` state.
* ``CONN_MAX_AGE`` is 0 because under ASGI a request's thread dies with the
  request. This thread lives as long as the process and keeps its
  connections between calls, whatever the database. A SQLite connection is
  a file handle with nothing to give back, and opening one (Django
  registers its SQL functions and runs the init command each time) costs
  more than a handshake's queries (measured: bench/README.md, What changed,
  and what each change bought). A pooled PostgreSQL connection is kept so
  that this thread never waits for the pool: request threads that hold
  pooled connections wait for this thread, and were this thread to wait
  for the pool in turn, a burst of requests would hold every connection
  while each waited for the others (the pool stalled for its timeout,
  then requests failed). One connection of the pool is this thread's for
  the life of the process.
* Before each call the connections are checked: one a call left inside a
  transaction is replaced; a PostgreSQL connection the server ended while it
  was idle (a restart, a cut) is replaced without a query (realtime.pgconn),
  so the first call after an outage does not fail; and one that failed
  since is replaced if it no longer answers.
* Code running in this thread may call ``async_to_sync`` (a signal receiver
  that notifies connections, a limit check): the coroutine runs on the
  event loop of the ``db_call`` that is waiting, as from a thread of
  ``sync_to_async``. Such a coroutine must not itself wait on ``db_call``:
  this thread is busy until it returns.

A request's own thread should hold no connection while it waits on this
thread: :func:`release_connections` gives the calling thread's back (the
identity middleware calls it once the caller is known, realtime.auth).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

from . import metrics, pgconn

logger = logging.getLogger(__name__)
R = TypeVar("R")

_jobs: queue.SimpleQueue = queue.SimpleQueue()
# Results not yet taken by their event loop: loop -> [(future, result, error)].
_results: dict[asyncio.AbstractEventLoop, list] = {}
_results_lock = threading.Lock()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def db_call(func: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """Return an async version of ``func`` (sync ORM code) that runs it on the realtime DB thread."""

    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        _start_thread()
        _jobs.put((loop, future, functools.partial(func, *args, **kwargs), time.monotonic()))
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


def queue_depth() -> int:
    """Return how many calls wait for the worker thread (read by realtime.metrics at scrape time)."""
    return _jobs.qsize()


# Read at scrape time: nothing on the DB path.
metrics.DB_QUEUE_DEPTH.set_function(queue_depth)


def _work() -> None:
    """The worker thread: run each call with its connections checked first."""
    # asgiref's sync threads record their event loop here, for async_to_sync (see the module docstring).
    caller = SyncToAsync.threadlocal
    while True:
        loop, future, call, queued = _jobs.get()
        metrics.db_waited(time.monotonic() - queued)
        caller.main_event_loop, caller.main_event_loop_pid = loop, os.getpid()
        result = error = None
        try:
            _check_connections()
            result = call()
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        finally:
            caller.main_event_loop = None
        _hand_back(loop, future, result, error)


def _hand_back(loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any, error: Any) -> None:
    """Queue a call's outcome for its loop; wake the loop only if nothing was queued for it."""
    with _results_lock:
        batch = _results.setdefault(loop, [])
        batch.append((future, result, error))
        wake = len(batch) == 1
        if wake:
            # A loop closed after its wake-up was scheduled never takes its batch: forget it
            # (one loop in a server; one per test in the tests).
            for closed in [other for other in _results if other.is_closed()]:
                del _results[closed]
    if wake:
        try:
            loop.call_soon_threadsafe(_settle_all, loop)
        except RuntimeError:  # that event loop is closed: nobody waits any more
            with _results_lock:
                _results.pop(loop, None)


def _settle_all(loop: asyncio.AbstractEventLoop) -> None:
    """In the event loop: settle every outcome queued for it."""
    with _results_lock:
        batch = _results.pop(loop, ())
    for future, result, error in batch:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _check_connections() -> None:
    """Replace a connection left inside a transaction, or broken since the last call."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        try:
            if not conn.get_autocommit():
                conn.close()  # a call left a transaction open: start from a clean connection
            elif conn.vendor == "postgresql" and pgconn.ended_by_server(conn.connection):
                conn.close()  # ended while idle (a restart, a cut): connect afresh, not fail a call
            elif conn.errors_occurred:
                if conn.is_usable():
                    conn.errors_occurred = False
                else:
                    conn.close()  # the database restarted: the next query connects afresh
        except Exception:  # a broken connection failing to close; Django connects afresh anyway
            logger.warning("closing a database connection failed", exc_info=True)


def release_connections() -> None:
    """Give back the calling thread's connections to other databases than SQLite (to their pool).

    For a request's thread once it has what it needs from the database
    before waiting on other work (realtime.auth): a thread that holds a
    pooled connection while it waits takes it from everyone else. A
    connection inside a transaction is kept. SQLite has no pool, and a
    request's SQLite connection is closed when the request ends.
    """
    for conn in connections.all(initialized_only=True):
        if conn.vendor != "sqlite" and conn.connection is not None and not conn.in_atomic_block:
            conn.close()
