"""realtime.shutdown: SIGTERM drains once; a second SIGTERM goes to the server at once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from realtime import shutdown
from realtime.process import process


@pytest.fixture
def server_handler():
    """Stand in for the server's SIGTERM handler; restore everything afterwards."""
    calls = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGTERM, before)
    process.reset()


async def wait_for(check, timeout=2.0):
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


@pytest.fixture
async def drained(server_handler):
    """Register a connection's closer, send SIGTERM, wait until the closer ran; return its calls."""
    closed = []

    async def closer():
        closed.append(True)

    shutdown.register(closer)
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_for(lambda: closed)
    return closed


async def test_sigterm_closes_connections_then_hands_over_to_the_server(drained, server_handler):
    assert shutdown.draining() and server_handler == []  # the server waits for the grace period
    await wait_for(lambda: server_handler, timeout=shutdown.GRACE_SECONDS + 2)
    assert drained == [True] and server_handler == [signal.SIGTERM]


async def test_a_second_sigterm_goes_to_the_server_at_once_without_a_second_drain(drained, server_handler):
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_for(lambda: server_handler, timeout=shutdown.GRACE_SECONDS / 2)
    await asyncio.sleep(shutdown.GRACE_SECONDS + 0.3)  # the first grace period's hand-over was cancelled
    assert drained == [True] and server_handler == [signal.SIGTERM]


async def test_drain_from_another_thread_closes_connections_then_calls_what_stops_the_server(server_handler):
    # runserver's autoreloader: the server's loop runs off the main thread, whose owner calls drain().
    closed, stopped = [], []

    async def closer():
        closed.append(True)

    shutdown.register(closer)
    await asyncio.to_thread(shutdown.drain, lambda: stopped.append(True))
    await wait_for(lambda: stopped, timeout=shutdown.GRACE_SECONDS + 2)
    assert closed == [True] and shutdown.draining()
    assert server_handler == []  # the signal handler of the server was not involved


def test_drain_with_nothing_ever_served_stops_the_server_at_once():
    process.shutdown.installed_on = None  # no connection, no job: no loop known
    stopped = []
    shutdown.drain(lambda: stopped.append(True))
    assert stopped == [True]
