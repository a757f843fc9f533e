"""SIGTERM under `make run`: manage.py runserver, Daphne in a thread of Django's autoreloader.

The autoreloader is two processes: the one started (it watches) and the
server process it starts again on each code change. SIGTERM comes to the
first (`kill`, `docker stop`) or to both (systemd stops the whole group);
either way live connections end as under Daphne and uvicorn alone:
WebSockets with 1012, SSE streams with the end of their body.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import LiveServer, make_live_server
from tests.sse_client import login, sse

pytestmark = pytest.mark.slow


@dataclass
class RunserverServer(LiveServer):
    """`make run`'s server: manage.py runserver with its autoreloader on."""

    def command(self) -> list[str]:
        """Return runserver's command line, on this server's port."""
        return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}"]

    def arguments(self) -> list[str]:
        """Return the command line; runserver serves ASGI_APPLICATION and takes no application."""
        return self.command()

    def server_pid(self) -> int:
        """Return the pid of the process that serves: the autoreloader's child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, f"the autoreloader has children {children}"
        return int(children[0])


def runserver(tmp_path: Path) -> RunserverServer:
    """Start `manage.py runserver` (reloader on) on a database prepared as for the live tests."""
    prepared = make_live_server(tmp_path)
    server = RunserverServer(
        url=prepared.url, port=prepared.port, env=prepared.env, log_path=tmp_path / "runserver.log"
    )
    server.start()
    return server


def open_socket(server: LiveServer, client: httpx.AsyncClient, path: str):
    """Open a WebSocket with ``client``'s session, as the page would."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    headers = {"Cookie": cookie, "Origin": server.url}
    return websockets.connect(server.ws_url + path, additional_headers=headers)


@pytest.mark.parametrize("signalled", ["reloader", "both"])
async def test_sigterm_under_the_autoreloader_closes_sockets_with_1012_and_ends_streams(tmp_path, signalled):
    server = runserver(tmp_path)
    try:
        room = f"runserver-{uuid.uuid4().hex[:12]}"
        async with login(server.url, "alice") as alice, sse(alice, f"/sse/rooms/{room}/") as stream:
            assert (await stream.next_event()).event == "hello"
            async with open_socket(server, alice, f"/ws/rooms/{room}/") as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                targets = [server.process.pid] + ([server.server_pid()] if signalled == "both" else [])
                for pid in targets:
                    os.kill(pid, signal.SIGTERM)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                with pytest.raises(EOFError):  # the body ended; no protocol error
                    while True:
                        await stream.next_event(timeout=5)
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert closed.value.rcvd.code == 1012
        assert await asyncio.to_thread(server.process.wait, 15) == 0  # both processes ended
    finally:
        server.stop()
