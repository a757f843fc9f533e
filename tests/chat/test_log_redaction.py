"""No credential in a log line of `make serve`'s uvicorn: a room's WebSocket, accepted and refused."""

from __future__ import annotations

import pytest

from tests.live_client import assert_refused, recv_json, ws_connect
from tests.serve import logged_line, served


@pytest.mark.slow
async def test_make_serve_logs_websocket_requests_without_their_token(tmp_path):
    with served(tmp_path) as (server, log_path):
        token = server.create_token("alice")
        async with ws_connect(server, None, f"/ws/rooms/x/?access_token={token}") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        # A refused handshake is logged too (uvicorn: `"WebSocket <path>" 403`).
        mistyped = f"{token}x"
        await assert_refused(server, f"/ws/rooms/x/?access_token={mistyped}")

        logged_line(log_path, '"WebSocket /ws/rooms/x/?access_token=[redacted]" [accepted]')
        logged_line(log_path, '"WebSocket /ws/rooms/x/?access_token=[redacted]" 403')
        log = log_path.read_text(errors="replace")
        assert token not in log
        assert mistyped not in log
