"""Run an ASGI ``send`` eagerly: on the caller's stack until it completes or must wait.

A server's ``send`` normally completes without waiting (it writes to its
transport); only a slow reader's paused transport makes it wait. Running it
on the caller's stack costs no task per message; what is left when it must
wait is finished in a task (realtime.delivery).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any


def send_eagerly(send: Callable[[dict], Awaitable[None]], message: dict) -> Awaitable[None] | None:
    """Run ``send(message)`` until it completes or must wait; return None, or an awaitable of the rest."""
    steps = send(message).__await__()
    try:
        waiting_on = steps.send(None)
    except StopIteration:
        return None
    return _Rest(steps, waiting_on)


class _Rest:
    """The rest of an awaitable that already ran until its first suspension.

    Awaiting it (in a task) passes on what it waits for, and back what the
    task sends or throws in (results, cancellation): ``yield from`` by hand,
    since the awaitable cannot be restarted.
    """

    __slots__ = ("steps", "waiting_on")

    def __init__(self, steps: Generator, waiting_on: Any) -> None:
        self.steps, self.waiting_on = steps, waiting_on

    def __await__(self) -> Generator:
        steps, value = self.steps, self.waiting_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation, GeneratorExit: hand it on
                step, arg = steps.throw, exc
            else:
                step, arg = steps.send, sent
            try:
                value = step(arg)
            except StopIteration as stop:
                return stop.value
