"""A bare ``websockets`` broadcast server: the ceiling of the fan-out benchmark.

No Django, no auth, no channel layer, no database: every text frame is decoded,
turned into a message event (one ``json.dumps`` per message, not per
recipient) and pushed to every connected client with ``websockets.broadcast``.
It speaks the same frames as the app (a ``hello`` first, then message events
with the sender's text) so the load client is shared. ``GET /healthz`` answers
200 so the runner can wait for it like for the other servers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()
IDS = itertools.count(1)
HELLO = json.dumps(
    {"type": "hello", "user": {"id": 0, "username": "anonymous"}, "room": "bench", "last_id": 0}
)
BAD_JSON = '{"type":"error","code":"bad_json","detail":"bad frame"}'


async def handler(connection: ServerConnection) -> None:
    """Greet a client, then broadcast each of its frames to everyone."""
    CLIENTS.add(connection)
    try:
        await connection.send(HELLO)
        async for frame in connection:
            try:
                text = json.loads(frame)["text"]
            except (ValueError, KeyError, TypeError):
                await connection.send(BAD_JSON)
                continue
            event = {"type": "message", "id": next(IDS), "room": "bench", "user": "anonymous", "text": text}
            broadcast(CLIENTS, json.dumps(event, separators=(",", ":")))
    finally:
        CLIENTS.discard(connection)


def process_request(connection: ServerConnection, request):
    """Answer ``/healthz`` over plain HTTP; let every other path upgrade."""
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def main(port: int) -> None:
    """Serve until killed."""
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        compression=None,  # the clients do not offer permessage-deflate anyway
        backlog=4096,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.port))  # the same event loop uvicorn picks
    else:
        asyncio.run(main(args.port))
