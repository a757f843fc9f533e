"""Fire-and-forget tasks of the core: run to the end, referenced until done, in a context of their own."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

_tasks: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` in a task of its own context (not the caller's), kept referenced until done."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a connection released at interpreter exit)
        coro.close()
        return
    task = loop.create_task(coro, context=contextvars.Context())
    _tasks.add(task)  # asyncio holds tasks weakly
    task.add_done_callback(_tasks.discard)
