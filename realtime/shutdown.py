"""Graceful restarts: on SIGTERM, live connections close with 1012 before the server stops.

Neither server ends long-lived connections well by itself: Daphne drops
sockets without a close frame, and uvicorn waits out its graceful timeout
on open SSE streams. Here SIGTERM first tells every live connection of this
process to end (WebSockets close with 1012 "service restart", SSE streams
finish), then hands the signal to the server's own handler after a short
grace, so clients reconnect and resume from their last id.

A server that runs off the main thread (Daphne under runserver's
autoreloader) cannot have a signal handler of ours: the main thread's owner
catches SIGTERM and calls :func:`drain` with what stops the server
(realtime/management/commands/runserver.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .process import process

logger = logging.getLogger(__name__)

GRACE_SECONDS = 0.5

Closer = Callable[[], Awaitable[None]]


@dataclass
class _Shutdown:
    """What this process closes on SIGTERM, and how far it got."""

    closers: set[Closer] = field(default_factory=set)
    installed_on: asyncio.AbstractEventLoop | None = None  # the loop our SIGTERM handler serves
    draining: bool = False
    handover: asyncio.TimerHandle | None = None  # the pending hand-over to the server's handler


process.declare("shutdown", _Shutdown)


def draining() -> bool:
    """Return whether this process is stopping (new live connections are refused)."""
    return process.shutdown.draining


def register(closer: Closer) -> None:
    """Ask for ``closer()`` to be awaited when the process is told to stop."""
    _install()
    process.shutdown.closers.add(closer)


def unregister(closer: Closer) -> None:
    """Forget a closer (its connection ended)."""
    process.shutdown.closers.discard(closer)


def drain(then: Callable[[], None]) -> None:
    """Close every live connection, then call ``then()`` (which stops the server); any thread."""
    loop = process.shutdown.installed_on
    if loop is None or loop.is_closed():
        then()  # nothing was ever served: nothing to close
    else:
        loop.call_soon_threadsafe(_drain, loop, then)


def _install() -> None:
    """Chain our SIGTERM handler in front of the server's, once per event loop."""
    loop = asyncio.get_running_loop()
    state = process.shutdown
    if state.installed_on is loop:
        return
    state.installed_on = loop  # what drain() schedules on
    # signal.signal() works on the main thread only; off it, SIGTERM comes through drain().
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "_realtime_drain", False):
        previous = previous._previous

    def on_sigterm(signum, frame) -> None:
        loop.call_soon_threadsafe(_drain, loop, functools.partial(_hand_over, previous, signum, frame))

    on_sigterm._realtime_drain = True
    on_sigterm._previous = previous
    signal.signal(signal.SIGTERM, on_sigterm)


def _drain(loop: asyncio.AbstractEventLoop, then: Callable[[], None]) -> None:
    """Close every live connection, then (after the grace period) call ``then``."""
    state = process.shutdown
    if state.handover is not None:
        # A later SIGTERM goes to the server's handler now (uvicorn: force exit), not to a second drain.
        state.handover.cancel()
        then()
        return
    state.draining = True
    closers = state.closers
    logger.info("SIGTERM: closing live connections with 1012, stopping background jobs (%d)", len(closers))
    for closer in list(closers):
        loop.create_task(_close_quietly(closer))
    state.handover = loop.call_later(GRACE_SECONDS, then)


async def _close_quietly(closer: Closer) -> None:
    """Run one closer; a connection that is already gone is not an error worth a traceback."""
    with contextlib.suppress(Exception):
        await closer()


def _hand_over(previous, signum, frame) -> None:
    """Run the handler that was installed before ours (the server's)."""
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
