"""What the server does with a client that stops reading: bounded memory, then close 1013.

    .venv/bin/python bench/slow_reader.py                      # uvicorn (make serve's flags)
    .venv/bin/python bench/slow_reader.py --server realtime-daphne

One client joins a room and stops reading (its receive buffers fill, as
with a stalled phone); another posts --messages messages of --size bytes.
The server's RSS is sampled while the reader is stalled, then the reader
reads again and reports what it got: the messages in order up to the point
the server gave up on it, and the close code (1013: try again later, resume
by replay). The channel layer's capacity (1000) bounds what waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from servers import KINDS, Server  # noqa: E402


async def read_rest(ws) -> tuple[list[int], int | None]:
    """Read until the server closes; return the sequence numbers received and the close code."""
    seqs: list[int] = []
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "message":
                seqs.append(int(event["text"].split(":", 1)[0]))
    except websockets.ConnectionClosed as closed:
        return seqs, closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return seqs, None


async def run(server: Server, sessions: list[dict], messages: int, size: int) -> dict:
    """Stall one reader, post messages from another client, then let the reader read."""
    url = f"ws://127.0.0.1:{server.port}/ws/rooms/slow/"
    headers = lambda i: {"Cookie": f"sessionid={sessions[i]['session']}", "Origin": server.url}  # noqa: E731
    rss_before = server.rss_kb()
    slow = await websockets.connect(url, additional_headers=headers(0), max_queue=1)
    for _ in range(2):  # hello, presence
        await slow.recv()
    # The reader now stops: its websockets buffer, then its socket buffers fill.
    async with websockets.connect(url, additional_headers=headers(1)) as writer:
        for _ in range(2):
            await writer.recv()
        pad = "x" * max(0, size - 20)
        for n in range(messages):
            await writer.send(json.dumps({"type": "message", "text": f"{n}:{pad}"}))
            if n % 100 == 99:  # stay in step with the server (its own echo)
                while json.loads(await writer.recv()).get("text", "").split(":", 1)[0] != str(n):
                    pass
        peak = server.rss_kb()
    seqs, code = await read_rest(slow)
    return {
        "server": server.kind.name,
        "messages": messages,
        "size": size,
        "rss_growth_kb_while_stalled": peak - rss_before,
        "stalled_reader_received": len(seqs),
        "in_order_without_gaps": seqs == list(range(len(seqs))),
        "close_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="realtime-uvicorn", choices=[k for k in KINDS if "realtime" in k])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=1000, help="bytes of text per message")
    args = parser.parse_args()
    kind = KINDS[args.server]
    with tempfile.TemporaryDirectory(dir=servers.BENCH / "results") as tmp:
        workdir = Path(tmp)
        template, sessions = servers.prepare_database(kind, workdir, 2)
        db = servers.copy_database(template, workdir / "slow.sqlite3")
        server = Server(kind, db, workdir / "server.log")
        server.start()
        try:
            result = asyncio.run(run(server, sessions, args.messages, args.size))
        finally:
            server.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
