"""The TLS-proxy settings under `make serve`, for a room's WebSocket handshakes."""

from __future__ import annotations

import pytest

from tests.live_client import assert_refused, recv_json, ws_connect
from tests.serve import logged_line, served

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.mark.slow
async def test_make_serve_ignores_forwarded_headers_when_not_behind_a_tls_proxy(tmp_path):
    # "0" reads as off in the Makefile as in settings.py.
    with served(tmp_path, DJANGO_BEHIND_TLS_PROXY="0") as (server, log_path):
        token = server.create_token("alice")
        path = f"/ws/rooms/proxy/?access_token={token}"
        https_origin = server.url.replace("http://", "https://", 1)

        # Were X-Forwarded-Proto trusted, the handshake would be wss:// and match an https page.
        await assert_refused(server, path, origin=https_origin, headers=FORWARDED)
        async with ws_connect(server, None, path, headers=FORWARDED) as ws:
            assert (await recv_json(ws))["type"] == "hello"

        # ... and X-Forwarded-For does not replace the client's address.
        accepted = logged_line(log_path, '"WebSocket /ws/rooms/proxy/', "[accepted]")
        assert "127.0.0.1:" in accepted
        assert "203.0.113.9" not in log_path.read_text(errors="replace")


@pytest.mark.slow
async def test_make_serve_behind_a_tls_proxy_takes_handshakes_through_it_only(tmp_path):
    with served(tmp_path, DJANGO_BEHIND_TLS_PROXY="1") as (server, log_path):
        token = server.create_token("alice")
        path = f"/ws/rooms/proxy/?access_token={token}"
        https_origin = server.url.replace("http://", "https://", 1)
        async with ws_connect(server, None, path, origin=https_origin, headers=FORWARDED) as ws:
            assert (await recv_json(ws))["type"] == "hello"
        # uvicorn took the client's address from the proxy (FORWARDED_ALLOW_IPS defaults to 127.0.0.1).
        assert "203.0.113.9:" in logged_line(log_path, '"WebSocket /ws/rooms/proxy/', "[accepted]")

        # A handshake that did not come through the TLS proxy is redirected, so refused.
        await assert_refused(server, path)
