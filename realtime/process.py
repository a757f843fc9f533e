"""What this process holds for its live connections, in one object: :data:`process`.

Django keeps its per-process registries in one ``Apps`` instance; the core
does the same. Each stateful module declares its part once, at import
(``process.declare("presence", PresenceState)``), and reaches it as
``process.presence``. :meth:`Process.reset` gives every part a fresh value
and cancels the process's tasks (the tests call it between cases);
:meth:`Process.loop_task` starts a named task once per event loop, and
:meth:`Process.spawn` runs fire-and-forget work, kept referenced until done.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any


class Process:
    """The core's process-wide state: declared parts, per-loop tasks, spawned tasks."""

    def __init__(self) -> None:
        self._parts: dict[str, Callable[[], Any]] = {}
        self._loop_tasks: dict[str, asyncio.Task] = {}
        self._spawned: set[asyncio.Task] = set()  # asyncio holds tasks weakly

    def declare(self, name: str, factory: Callable[[], Any]) -> Any:
        """Add the part ``name`` (``process.<name>``), made by ``factory()`` now and on each reset."""
        self._parts[name] = factory
        value = factory()
        setattr(self, name, value)
        return value

    def loop_task(self, name: str, start: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task:
        """Return this event loop's task ``name``, starting ``start()`` unless it is running."""
        loop = asyncio.get_running_loop()
        task = self._loop_tasks.get(name)
        if task is None or task.done() or task.get_loop() is not loop:
            # A context of its own: it serves the whole process, not the caller that started it.
            task = loop.create_task(start(), name=f"realtime-{name}", context=contextvars.Context())
            self._loop_tasks[name] = task
        return task

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
        """Run ``coro`` in a task of its own context (not the caller's), kept referenced until done."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a connection released at interpreter exit)
            coro.close()
            return
        task = loop.create_task(coro, name=name, context=contextvars.Context())
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def reset(self) -> None:
        """Cancel the process's tasks and give every part a fresh value (tests, between cases)."""
        for task in [*self._loop_tasks.values(), *self._spawned]:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                task.cancel()
        self._loop_tasks.clear()
        self._spawned.clear()
        for name, factory in self._parts.items():
            setattr(self, name, factory())


process = Process()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
    """Run ``coro`` to its end in a task of its own, referenced until done (the public ``spawn``)."""
    process.spawn(coro, name=name)


def loop_task(name: str, start: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task:
    """Return this event loop's task ``name``, starting ``start()`` unless it is running."""
    return process.loop_task(name, start)
