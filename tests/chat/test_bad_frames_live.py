"""Bad input over a WebSocket: an error event, the socket stays open, nothing is stored."""

from __future__ import annotations

import json

import pytest

from tests.chat.conftest import stored_texts
from tests.live_client import bearer, joined, recv_event, send_json, ws_connect

pytestmark = pytest.mark.slow

BAD_FRAMES = {
    "malformed_json": ("{not json", "bad_json"),
    "json_array": ("[1, 2]", "bad_json"),
    "json_number": ("42", "bad_json"),
    "unknown_type": ('{"type": "shout", "text": "hi"}', "unknown_type"),
    "no_type": ('{"text": "hi"}', "invalid"),
    "non_string_type": ('{"type": 7, "text": "hi"}', "invalid"),
    "missing_text": ('{"type": "message"}', "invalid"),
    "non_string_text": ('{"type": "message", "text": 5}', "invalid"),
    "empty_text": ('{"type": "message", "text": ""}', "invalid"),
    "whitespace_text": ('{"type": "message", "text": " \\n\\t "}', "invalid"),
    "text_of_2001_chars": (json.dumps({"type": "message", "text": "x" * 2001}), "too_large"),
    # A ping would be answered if it fit: only the frame's size is wrong here.
    "frame_over_64_kib": (json.dumps({"type": "ping", "padding": "x" * 65536}), "too_large"),
    "binary_frame": (b'{"type": "message", "text": "hi"}', "binary_unsupported"),
}


@pytest.fixture
def alice_ws(live_server, alice_token, room):
    """Return a factory of alice's sockets in the test's room (token auth: no login needed)."""
    return lambda: ws_connect(live_server, None, f"/ws/rooms/{room}/", headers=bearer(alice_token))


async def assert_still_open(ws) -> None:
    """Assert the socket still answers a ping."""
    await send_json(ws, {"type": "ping"})
    assert await recv_event(ws) == {"type": "pong"}


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_gets_its_error_and_the_socket_stays_open(alice_ws, alice_bearer, room, frame, code):
    async with alice_ws() as ws:
        await joined(ws)
        await ws.send(frame)

        error = await recv_event(ws)
        assert error["type"] == "error" and error["code"] == code
        assert isinstance(error["detail"], str) and error["detail"]
        await assert_still_open(ws)

    assert await stored_texts(alice_bearer, room) == []


async def test_one_socket_survives_every_bad_frame_in_a_row(alice_ws, anonymous):
    async with alice_ws() as ws:
        await joined(ws)
        for frame, code in BAD_FRAMES.values():
            await ws.send(frame)
            assert (await recv_event(ws))["code"] == code

        await assert_still_open(ws)
    assert (await anonymous.get("/healthz")).json()["status"] == "ok"


async def test_21st_message_in_10_seconds_is_rate_limited_and_dropped(alice_ws, alice_bearer, room):
    async with alice_ws() as ws:
        await joined(ws)
        for i in range(20):
            await send_json(ws, {"type": "message", "text": f"m{i}"})
            assert (await recv_event(ws))["type"] == "message"
        await send_json(ws, {"type": "message", "text": "one too many"})

        assert (await recv_event(ws))["code"] == "rate_limited"
        await assert_still_open(ws)

    assert await stored_texts(alice_bearer, room) == [f"m{i}" for i in range(20)]


async def test_websocket_frames_and_http_posts_share_one_rate_limit(alice_ws, alice_bearer, room):
    async with alice_ws() as ws:
        await joined(ws)
        for i in range(15):
            await send_json(ws, {"type": "message", "text": f"ws{i}"})
            assert (await recv_event(ws))["type"] == "message"
        for i in range(5):
            response = await alice_bearer.post(f"/api/rooms/{room}/messages", json={"text": f"http{i}"})
            assert response.status_code == 201
            assert (await recv_event(ws))["text"] == f"http{i}"

        response = await alice_bearer.post(f"/api/rooms/{room}/messages", json={"text": "one too many"})

        assert response.status_code == 429
        assert response.json()["error"] == "rate_limited" and response.json()["detail"]
        await assert_still_open(ws)
    stored = await stored_texts(alice_bearer, room)
    assert len(stored) == 20 and "one too many" not in stored


async def test_deeply_nested_json_frame_is_bad_json_and_the_socket_stays_open(alice_ws):
    async with alice_ws() as ws:
        await joined(ws)
        await ws.send("[" * 60000)

        assert (await recv_event(ws))["code"] == "bad_json"
        await assert_still_open(ws)
