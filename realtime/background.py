"""Background work of apps: started with the server, stopped on SIGTERM, one at a time if asked.

An app registers a job in its ``AppConfig.ready()``::

    background.register("prices-feed", feed.run, exclusive=True)

Neither Daphne nor uvicorn as ``make serve`` runs it (``--lifespan off``)
sends lifespan events, so jobs start on the process's first request or
connection (realtime.asgi calls :func:`ensure_started`), on whatever event
loop serves it. SIGTERM cancels them (realtime.shutdown). A job that fails
is logged and started again a second later.

``exclusive=True``: on a shared bus, one process of the cluster runs the
job at a time. Every process runs a candidate; the one holding the job's
lease in the store (realtime.stores; Redis: redis-py's ``Lock``, ``SET NX
PX`` and owner-checked renewal; PostgreSQL: a lease row with an expiry)
runs the job, renews the lease at a third of its term and cancels the job
the moment a renewal fails; the others take over within one term (at
once when the holder stops and gives it back). On the in-process bus there
is one process, so the job just runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import shutdown, stores
from .process import loop_task, process

logger = logging.getLogger(__name__)

LEASE_SECONDS = 3.0
RESTART_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    """A long-running coroutine function of an app, and whether it runs on one process only."""

    name: str
    run: Callable[[], Awaitable[None]]
    exclusive: bool = False


# The apps' registrations (made once, in their ready()): kept when the process state is reset.
_jobs: dict[str, Job] = {}


@dataclass
class _Running:
    """The jobs running on this process, and the task that supervises them."""

    supervisor: asyncio.Task | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)  # one per job, in registration order


process.declare("background", _Running)


def register(name: str, run: Callable[[], Awaitable[None]], *, exclusive: bool = False) -> None:
    """Run ``run()`` in the background of every server process (of one, if ``exclusive``)."""
    _jobs[name] = Job(name, run, exclusive)


def ensure_started() -> None:
    """Start the registered jobs on the running event loop, once per loop; cheap when started."""
    if _jobs and not shutdown.draining():
        loop_task("background-jobs", _run_jobs)


async def stop() -> None:
    """Cancel every job of this process and wait for them (SIGTERM; tests)."""
    supervisor = process.background.supervisor
    if supervisor is not None and not supervisor.done():
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await supervisor


def running() -> list[str]:
    """Return the names of the jobs supervised on this process."""
    tasks = process.background.tasks
    return [job.name for job, task in zip(_jobs.values(), tasks, strict=False) if not task.done()]


async def _run_jobs() -> None:
    """Run every registered job, each in a task of its own, until stopped (SIGTERM, :func:`stop`)."""
    state = process.background
    state.supervisor = asyncio.current_task()
    # The jobs inherit this task's context, its own: not the request's that started it.
    state.tasks = tasks = [
        asyncio.create_task(_supervise(job), name=f"realtime-job-{job.name}") for job in _jobs.values()
    ]
    if not tasks:  # every job unregistered meanwhile (tests)
        return
    shutdown.register(stop)
    try:
        await asyncio.wait(tasks)  # each runs until cancelled; one that dies leaves the others be
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)  # their leases given back
        shutdown.unregister(stop)


async def _supervise(job: Job) -> None:
    """Run ``job`` (while holding its lease, if exclusive); start it again if it fails."""
    store = stores.current() if job.exclusive else None
    lease = _Lease(store, job.name) if store is not None else None
    try:
        while True:
            if lease is not None and not await lease.acquire():
                await asyncio.sleep(LEASE_SECONDS / 3)
                continue
            await _run_once(job, lease)
            await asyncio.sleep(RESTART_SECONDS)
    finally:
        if lease is not None:
            await lease.close()


async def _run_once(job: Job, lease: _Lease | None) -> None:
    """Run the job until it ends or its lease is lost."""
    task = asyncio.ensure_future(job.run())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=LEASE_SECONDS / 3)
            if lease is not None and not task.done() and not await lease.renew():
                logger.warning("background job %s lost its lease; another process takes over", job.name)
                return
        if not task.cancelled() and task.exception() is not None:
            logger.error("background job %s failed; restarting", job.name, exc_info=task.exception())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class _Lease:
    """The store's lease of an exclusive job: which process runs it. The store's errors count as not held."""

    def __init__(self, store: stores.Store, name: str) -> None:
        self.name = name
        self.errors = store.errors
        self.lease = store.lease(name, LEASE_SECONDS)

    async def acquire(self) -> bool:
        """Return whether this process holds the lease now."""
        try:
            return await self.lease.acquire()
        except self.errors as exc:
            logger.warning("lease %s: store unavailable: %r", self.name, exc)
            return False

    async def renew(self) -> bool:
        """Extend the lease to a full term; return False if it was lost."""
        try:
            return await self.lease.renew()
        except self.errors:
            return False

    async def close(self) -> None:
        """Give the lease back (another process takes over at once)."""
        with contextlib.suppress(*self.errors):
            await self.lease.release()
