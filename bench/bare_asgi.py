"""A trivial ASGI broadcast app: the floor of the server the project runs on.

The same frames as ``bare_websockets.py`` (a ``hello`` first, then one
message event per text frame, encoded once and sent to every connected
client), but as an ASGI application, so that uvicorn with ``make serve``'s
flags serves it. No Django, no auth, no database: what it costs over the
bare ``websockets`` server is the ASGI server's own share, which no change in
the project can remove. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import itertools
import json

from bare_websockets import BAD_JSON, HELLO  # the same frames (uvicorn runs it with --app-dir bench)

CLIENTS: set = set()  # the ASGI ``send`` callables of the open sockets
IDS = itertools.count(1)


async def broadcast(text: str) -> None:
    """Send ``text`` to every open socket, one after the other (as ASGI offers no fan-out)."""
    message = {"type": "websocket.send", "text": text}
    for send in list(CLIENTS):
        try:
            await send(message)
        except Exception:  # a socket that closed meanwhile (uvicorn raises on send after close)
            CLIENTS.discard(send)


async def websocket(receive, send) -> None:
    """Accept, greet, then broadcast each text frame as a message event until the client leaves."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": HELLO})
    CLIENTS.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                text = json.loads(message.get("text") or "")["text"]
            except (ValueError, KeyError, TypeError):
                await send({"type": "websocket.send", "text": BAD_JSON})
                continue
            event = {"type": "message", "id": next(IDS), "room": "bench", "user": "anonymous", "text": text}
            await broadcast(json.dumps(event, separators=(",", ":")))
    finally:
        CLIENTS.discard(send)


async def application(scope, receive, send) -> None:
    """Serve sockets on any path, and 200 on ``GET /healthz`` (404 elsewhere)."""
    if scope["type"] == "websocket":
        await websocket(receive, send)
    elif scope["type"] == "http":
        status = 200 if scope["path"] == "/healthz" else 404
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok\n" if status == 200 else b""})
