"""runserver: Daphne's, with SIGTERM closing live connections under the autoreloader too.

With the autoreloader on (the default, and ``make run``) runserver is two
processes, and Django's ``run_with_reloader`` answers SIGTERM with
``sys.exit(0)`` in both. In the watching process that exit interrupts
``subprocess.run``, which SIGKILLs the server process; in the server
process it ends the main thread while Daphne runs in a daemon thread,
without the signal handlers it installs only on the main thread. Either
way sockets drop without a close frame (1006) and SSE streams are cut
mid-chunk.

Here the watching process passes SIGTERM on to the server process and
waits for it; the server process lets realtime.shutdown close its live
connections (1012, the end of SSE bodies), stops Daphne's reactor and
exits. ``--noreload`` is one process, Daphne's own signal handling with
realtime.shutdown in front, as under ``daphne``. Everything else
(options, the reloader's restarts, Ctrl-C) is Daphne's and Django's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from daphne.management.commands.runserver import Command as DaphneRunserver
from django.utils import autoreload
from twisted.internet import reactor  # Daphne's asyncio reactor: the import above installed it

from realtime import shutdown

logger = logging.getLogger("django.utils.autoreload")

# How long the server process waits for Daphne to stop after the drain, before it exits anyway.
STOP_SECONDS = 10.0
RELOAD_EXIT_CODE = 3  # django.utils.autoreload.trigger_reload: a file changed, start again


class Command(DaphneRunserver):
    """Daphne's runserver; under the autoreloader SIGTERM drains as under Daphne alone."""

    def run(self, **options) -> None:
        """Run the server, in a process the autoreloader restarts if it is on."""
        if not options["use_reloader"]:
            return super().run(**options)
        try:
            if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
                self.serve_watched(**options)
            else:
                sys.exit(watch_server_process())
        except KeyboardInterrupt:
            pass

    def serve_watched(self, **options) -> None:
        """The server process: Daphne in a thread, the file watcher on the main thread."""
        served = threading.Event()

        def serve(*args, **kwargs) -> None:
            try:
                self.inner_run(*args, **kwargs)
            finally:
                served.set()

        signal.signal(signal.SIGTERM, drain_on_sigterm(served))
        reloader = autoreload.get_reloader()
        logger.info("Watching for file changes with %s", reloader.__class__.__name__)
        autoreload.start_django(reloader, serve, **options)


def drain_on_sigterm(served: threading.Event):
    """Return the server process's SIGTERM handler: drain, stop Daphne, wait for it, exit."""
    stopping = False

    def on_sigterm(signum, frame) -> None:
        nonlocal stopping
        if stopping:  # systemd signals both processes, and the watcher passes its signal on
            return
        stopping = True
        shutdown.drain(then=lambda: reactor.callFromThread(stop_reactor))
        served.wait(shutdown.GRACE_SECONDS + STOP_SECONDS)
        sys.exit(0)

    return on_sigterm


def stop_reactor() -> None:
    """Stop Daphne's reactor (Daphne then ends what is left of its connections); on its thread."""
    if reactor.running:
        reactor.stop()


def watch_server_process() -> int:
    """The watching process: start the server process again after each code change, until it ends.

    Django's ``restart_with_reloader``, but SIGTERM is passed on to the server
    process and waited for, where Django's ``sys.exit`` made ``subprocess.run``
    SIGKILL it.
    """
    env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    args = autoreload.get_child_arguments()
    stopping = False
    child: subprocess.Popen | None = None

    def on_sigterm(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    while not stopping:
        child = subprocess.Popen(args, env=env, close_fds=False)
        if stopping:  # SIGTERM came while it started
            child.send_signal(signal.SIGTERM)
        try:
            returncode = child.wait()
        except BaseException:  # Ctrl-C: as Django's subprocess.run does
            child.kill()
            child.wait()
            raise
        if stopping and returncode == -signal.SIGTERM:
            return 0  # stopped before its handler was installed: still a clean stop
        if returncode != RELOAD_EXIT_CODE or stopping:
            return returncode
    return 0
