"""uvicorn's httptools protocol with a header timeout: a connection must send its request's headers in time.

uvicorn (0.54) arms its ``--timeout-keep-alive`` timer only once a response
is complete. A connection that never sends a request, or sends its headers
a byte at a time (slowloris), has no timer at all and stays open
indefinitely, holding a socket and a file descriptor; enough of them and
the process runs out. It has no option for this (nginx's is
``client_header_timeout``).

This subclass closes a connection whose request headers are not complete
``REALTIME_HEADER_TIMEOUT`` seconds (default 10) after it opened, or after
the first byte of a later request on a kept-alive connection. A slow client
cannot stretch the deadline by trickling bytes. Once the headers are in,
nothing changes: bodies, streams and WebSockets (whose upgrade completes
the headers) are not limited by it. Select it with
``uvicorn --http realtime.serverguard:HttpToolsProtocol`` (``make serve``).

It reads the parser callbacks of uvicorn's ``HttpToolsProtocol``
(``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``connection_lost``); tests/realtime/test_hardening.py fails if an upgrade
changes them.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornHttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0


def header_timeout() -> float:
    """Return the seconds a connection has to send its request's headers."""
    return float(getattr(settings, "REALTIME_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT))


class HttpToolsProtocol(UvicornHttpToolsProtocol):
    """uvicorn's httptools protocol that closes a connection whose request headers come too late."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a kept-alive connection's next request
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._header_timer = self.loop.call_later(header_timeout(), self._headers_late)

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("Closing a connection whose request headers did not arrive in time.")
            self.transport.close()
