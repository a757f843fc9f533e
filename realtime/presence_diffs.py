"""When and how a topic's presence listeners hear that its list changed: one ``presence_diff`` each.

A change to a topic's list from another process (a delta or a snapshot,
realtime.presence_peers) schedules its diffs, and so does each heartbeat
tick for a topic still behind (this process's own joins and leaves, as
they always went): :data:`DIFF_DELAY` later, so the changes of a burst
ride together, and at most one
round every :data:`DIFF_SECONDS` per topic (the wire contract: one a
second), further apart when a round is costly (10,000 listeners), as the
heartbeat is (realtime.registry.TICK_COST_FACTOR). One task per process
sends every round, none per topic or per listener. Each listener gets the
change from what it was last told, encoded once per distinct baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from . import events, registry
from .process import process

DIFF_SECONDS = 1.0
DIFF_DELAY = 0.05


@dataclass
class _Diffs:
    """The topics whose diffs are due now, and the wake-up of the one sender."""

    due: list[Any] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


process.declare("presence_diffs", _Diffs)


def schedule(local: Any) -> None:
    """Schedule the diffs of the topic ``local`` (realtime.presence's ``_Topic``) unless they are."""
    if local.flush is not None or not local.listeners:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a connection released at interpreter exit)
        return
    spacing = max(DIFF_SECONDS, local.send_seconds * registry.TICK_COST_FACTOR)
    delay = max(DIFF_DELAY, local.sent_at + spacing - time.monotonic())
    local.flush = loop.call_later(delay, _due, process.presence_diffs, local)
    process.loop_task("presence-diffs", _send_due)


def cancel(local: Any) -> None:
    """Cancel the topic's scheduled diffs (it is dropped)."""
    if local.flush is not None:
        local.flush.cancel()
        local.flush = None


def _due(state: _Diffs, local: Any) -> None:
    local.flush = None
    if state is process.presence_diffs:  # not from before a reset (tests)
        state.due.append(local)
        state.wake.set()


async def _send_due() -> None:
    """Send the diffs of each topic whose time came (this process's one sender of diffs)."""
    state = process.presence_diffs
    while True:
        await state.wake.wait()
        state.wake.clear()
        due, state.due = state.due, []
        for local in due:
            await send(local)


async def send(local: Any) -> None:
    """Tell each listener of the topic how it changed since it last heard (one encoding per baseline)."""
    if not local.behind or not local.listeners:
        return
    started, at = time.perf_counter(), time.monotonic()
    local.behind = False
    current = local.snapshot()
    texts: dict[Any, str] = {}
    for deliver, seen in list(local.listeners.items()):
        if seen is None or seen is current or local.listeners.get(deliver) is not seen:
            continue
        text = texts.get(seen)
        if text is None:
            joins, leaves = current.users - seen.users, seen.users - current.users
            diff = events.presence_diff(joins=list(joins), leaves=list(leaves))
            text = texts[seen] = events.encode(diff) if joins or leaves else ""
        local.listeners[deliver] = current
        if text:
            local.sent_at = at  # a round that told nobody anything (a joiner's own join) does not count
            with contextlib.suppress(Exception):
                await deliver(text)
    local.send_seconds = time.perf_counter() - started
