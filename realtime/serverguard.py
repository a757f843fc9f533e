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

It also answers a WebSocket upgrade that the WebSocket protocol cannot
parse. uvicorn parses every request with httptools, which takes lines of
any length, then hands a WebSocket upgrade to the ``--ws`` protocol by
writing the request out again and feeding it to that protocol's own parser.
The sans-I/O websockets parser refuses a request line or a header line over
8 KiB (a long query string, a large Cookie) or more than 128 headers, and
queues a 414 or 431 answer; uvicorn's ``WebSocketsSansIOProtocol`` only
looks for parsed requests and frames, so it neither sent that answer nor
closed the connection, and the header timeout had stopped with the
headers: the socket was held until the client left. This sends the queued
answer (or a 400 when the parser has none) and closes the connection.

With ``--ws websockets-sansio``, upgrades go to this module's subclass of
uvicorn's ``WebSocketsSansIOProtocol``. uvicorn logs a text message that is
not valid UTF-8 as an ERROR with a traceback before it closes the
connection with 1007: one authenticated client could fill the log. The
subclass logs one WARNING line instead; the app hears the 1007, which the
connection metrics count under its code.

It reads the parser callbacks of uvicorn's ``HttpToolsProtocol``
(``connection_made``, ``on_message_begin``, ``on_headers_complete``,
``connection_lost``, ``handle_websocket_upgrade``, ``ws_protocol_class``) and
the sans-I/O protocol's ``conn``, ``handshake_initiated`` and text-message
path (``send_receive_event_to_app``); the hardening tests through
``make serve`` fail if an upgrade changes them.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornHttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol as UvicornWebSocketsSansIOProtocol,
)
from websockets.server import ServerProtocol

_INVALID = b"Failed to open a WebSocket connection: did not receive a valid HTTP request.\n"
# What an upgrade gets when the WebSocket parser refused it without an answer of its own.
BAD_REQUEST = b"".join(
    [
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_INVALID),
        _INVALID,
    ]
)

DEFAULT_HEADER_TIMEOUT = 10.0


def header_timeout() -> float:
    """Return the seconds a connection has to send its request's headers."""
    return float(getattr(settings, "REALTIME_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT))


class HttpToolsProtocol(UvicornHttpToolsProtocol):
    """uvicorn's httptools protocol that closes a connection whose request headers come too late."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.ws_protocol_class is UvicornWebSocketsSansIOProtocol:
            self.ws_protocol_class = WebSocketsSansIOProtocol

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

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        self._refuse_unparsed_handshake(self.transport.get_protocol())

    def _refuse_unparsed_handshake(self, protocol: object) -> None:
        """Answer and close an upgrade the WebSocket protocol's parser refused (uvicorn leaves it open)."""
        conn = getattr(protocol, "conn", None)
        if not isinstance(conn, ServerProtocol) or getattr(protocol, "handshake_initiated", True):
            return  # another --ws implementation, or a request it parsed (and answers)
        if conn.handshake_exc is None or self.transport.is_closing():
            return
        answer = b"".join(conn.data_to_send()) or BAD_REQUEST
        self.logger.warning("Invalid WebSocket handshake received: %s.", conn.handshake_exc)
        self.transport.write(answer)
        self.transport.close()

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


class WebSocketsSansIOProtocol(UvicornWebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol; a text message that is not UTF-8 is one log line."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        # uvicorn's text path, but for the invalid message's log line.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._close_invalid_text()
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _close_invalid_text(self) -> None:
        """Close with 1007 (the app hears it), logging one line rather than a traceback."""
        self.logger.warning(
            '%s - "WebSocket %s" 1007: a text message is not valid UTF-8',
            get_client_addr(self.scope),
            get_path_with_query_string(self.scope),
        )
        self.conn.send_close(1007)
        self.handle_parser_exception()
