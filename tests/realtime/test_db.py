"""realtime.db: each call's outcome reaches its own caller, however the results are handed back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from realtime.db import db_call


async def test_concurrent_calls_each_get_their_own_result():
    """Results handed back in one batch still settle each caller with its own value."""
    calls = [db_call(lambda i=i: i * 2)() for i in range(300)]
    assert await asyncio.gather(*calls) == [i * 2 for i in range(300)]


async def test_an_error_reaches_its_caller_only():
    def fail() -> None:
        raise ValueError("this call failed")

    outcomes = await asyncio.gather(db_call(fail)(), db_call(lambda: "fine")(), return_exceptions=True)
    assert isinstance(outcomes[0], ValueError) and outcomes[1] == "fine"


async def test_a_caller_cancelled_while_its_call_runs_leaves_the_next_call_its_result():
    running, release = threading.Event(), threading.Event()

    def blocking() -> str:
        running.set()
        release.wait(10)
        return "too late"

    blocked = asyncio.ensure_future(db_call(blocking)())
    after = asyncio.ensure_future(db_call(lambda: "after")())
    await asyncio.to_thread(running.wait, 10)
    blocked.cancel()
    release.set()
    assert await after == "after"
    with pytest.raises(asyncio.CancelledError):
        await blocked


def test_the_results_of_a_closed_event_loop_are_forgotten():
    """A loop closed with a result still queued for it is not held for the process's life."""
    from realtime import db

    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))  # a loop that ran
    future = loop.create_future()
    db._hand_back(loop, future, "queued", None)  # its wake-up scheduled, never run
    loop.close()

    async def one_more_call() -> str:
        return await db_call(lambda: "fine")()

    assert asyncio.run(one_more_call()) == "fine"
    assert loop not in db._results
