"""Write a published event's frame straight to uvicorn's sans-I/O WebSocket, framed once per event.

An ASGI ``send`` per recipient runs a coroutine, waits on the protocol's
``writable`` event, encodes the text to UTF-8 and builds the frame again for
every socket, although a server's text frame (unmasked, no extension) is the
same bytes for all of them. When the server is uvicorn's ``websockets-sansio``
protocol (``make serve``) with no extension negotiated (:func:`target_of`),
:func:`write` hands the frame, built once per event by the
``websockets`` library itself, to the socket's transport, exactly what
uvicorn's own ``send`` ends with. Own code beats the library's path here
(bench/README.md has the figures). Whenever the protocol is not in the plain
open state (paused by a slow reader, closing, a fragment pending, frames
waiting, debug framing) the writer declines and the caller uses the ASGI
``send``, which handles every one of those cases as before.

A socket's first frame in a turn of the event loop is written at once; its
later frames in the same turn are queued, and one callback at the end of
the turn hands each socket what queued for it in ONE ``transport.write()``,
the system call that is most of a delivery's cost (bench/README.md). Inside
:func:`batch` (events published together, such as a stored batch of messages) the
first frame waits too, so each socket gets the batch in one write when it
ends; outside, a lone event goes out as soon as before. Anything else sent
on the socket goes after what is queued: the ASGI send of a consumer that
writes here first calls :func:`flush` (realtime.delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

try:  # uvicorn[standard] brings both; without them every socket uses the ASGI send
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import Side, State
except ImportError:  # pragma: no cover - another server
    WebSocketsSansIOProtocol = None

logger = logging.getLogger(__name__)

# The last text framed, and its frame: a publish offers the same str to every subscriber in a
# row, so one entry is enough and nothing is kept per socket.
_last: tuple[str | None, bytes] = (None, b"")


def frame_of(text: str) -> bytes:
    """Return the unmasked, uncompressed text frame of ``text``, built once for a run of recipients."""
    global _last
    last_text, frame = _last
    if last_text is not text:
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        _last = (text, frame)
    return frame


# The sockets written to in this turn of the loop, and the frames each got since, in order.
_written: set = set()
_pending: dict[object, list[bytes]] = {}
_batches = 0  # batch() blocks open: every frame waits for the last one's end (or the turn's)


def target_of(send: Callable) -> object | None:
    """Return the protocol behind ASGI ``send`` when :func:`write` can reach it, else None."""
    protocol = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    return protocol


def write(protocol, text: str) -> bool:
    """Write ``text`` to ``protocol`` as one frame (now, or with the socket's others at the turn's end).

    Return True once it is the socket's, False if the ASGI send must take it.
    """
    conn = protocol.conn
    if (
        protocol.disconnected
        or protocol.close_sent
        or not protocol.handshake_complete
        or protocol.initial_response is not None
        or not protocol.writable.is_set()
        or conn.state is not State.OPEN
        or conn.side is not Side.SERVER
        or conn.extensions
        or conn.expect_continuation_frame
        or conn.writes
        or conn.debug
    ):
        return False
    written = len(_written)
    _written.add(protocol)
    if not written:
        asyncio.get_running_loop().call_soon(_end_turn)
    if _batches or len(_written) == written:  # not the socket's first this turn, or a batch
        frames = _pending.get(protocol)
        if frames is None:
            _pending[protocol] = [frame_of(text)]
        else:
            frames.append(frame_of(text))
        return True
    try:
        protocol.transport.write(frame_of(text))
    except BaseException:
        _written.discard(protocol)  # nothing went out: nothing may wait behind it
        raise
    return True


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Hold every frame written inside until the block ends: then one write per socket."""
    global _batches
    _batches += 1
    try:
        yield
    finally:
        _batches -= 1
        if not _batches:
            _end_turn()


def flush(protocol) -> None:
    """Write out now what :func:`write` queued for ``protocol``: call before any other send on it."""
    frames = _pending.pop(protocol, None)
    if frames is not None:
        _write_out(protocol, frames)


def _end_turn() -> None:
    """Write out every socket's queued frames, one ``transport.write()`` each (once per loop turn)."""
    _written.clear()
    while _pending:
        protocol, frames = _pending.popitem()
        _write_out(protocol, frames)


def _write_out(protocol, frames: list[bytes]) -> None:
    if protocol.disconnected or protocol.conn.state is not State.OPEN:
        return  # closed since (by the client or the server itself): the client resumes by replay
    try:
        protocol.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
    except Exception as exc:  # the client is gone: the server tells its consumer (websocket.disconnect)
        logger.debug("direct write to a gone socket: %r", exc)
