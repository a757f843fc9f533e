"""Who may open a WebSocket: the same middleware stack as HTTP, refusals before accept."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.live_client import assert_refused, bearer, joined, login, recv_json, ws_connect

pytestmark = pytest.mark.slow


def revoke(live_server, token: str) -> None:
    """Revoke ``token`` as the admin would (sets ``revoked=True``)."""
    live_server.manage(
        "shell",
        "-c",
        "from realtime.models import ApiToken, hash_token; "
        f"t = ApiToken.objects.get(digest=hash_token({token!r})); t.revoked = True; t.save()",
    )


async def logged(live_server, line: str, timeout: float = 3) -> str:
    """Wait until the server's log holds ``line`` (its output is flushed lazily); return the log."""
    async with asyncio.timeout(timeout):
        while line not in (log := live_server.log_path.read_text(errors="replace")):
            await asyncio.sleep(0.05)
    return log


async def test_handshake_without_identity_is_refused_with_403(live_server, room):
    await assert_refused(live_server, f"/ws/rooms/{room}/")


async def test_handshake_from_a_foreign_origin_is_refused_even_when_logged_in(live_server, alice, room):
    await assert_refused(live_server, f"/ws/rooms/{room}/", client=alice, origin="http://evil.example")


async def test_bearer_header_opens_a_websocket_as_the_tokens_user(live_server, alice_token, room):
    async with ws_connect(live_server, None, f"/ws/rooms/{room}/", headers=bearer(alice_token)) as ws:
        assert (await recv_json(ws))["user"]["username"] == "alice"


async def test_access_token_query_parameter_opens_a_websocket(live_server, alice_token, room):
    async with ws_connect(live_server, None, f"/ws/rooms/{room}/?access_token={alice_token}") as ws:
        assert (await recv_json(ws))["user"]["username"] == "alice"


async def test_access_token_never_reaches_the_server_log(live_server, alice_token, room):
    async with ws_connect(live_server, None, f"/ws/rooms/{room}/?access_token={alice_token}") as ws:
        await recv_json(ws)
    await assert_refused(
        live_server, f"/ws/rooms/{room}/?access_token={alice_token}", origin="http://evil.example"
    )

    log = await logged(live_server, f"WSCONNECT /ws/rooms/{room}/")
    assert alice_token not in log


async def test_revoked_token_is_refused_by_header_and_by_query(live_server, room):
    token = live_server.create_token("bob")
    path = f"/ws/rooms/{room}/"
    async with ws_connect(live_server, None, path, headers=bearer(token)) as ws:
        assert (await recv_json(ws))["type"] == "hello"
    async with ws_connect(live_server, None, f"{path}?access_token={token}") as ws:
        assert (await recv_json(ws))["type"] == "hello"

    revoke(live_server, token)

    await assert_refused(live_server, path, headers=bearer(token))
    await assert_refused(live_server, f"{path}?access_token={token}")


async def test_invalid_token_is_refused_by_header_and_by_query(live_server, room):
    path = f"/ws/rooms/{room}/"
    await assert_refused(live_server, path, headers={"Authorization": "Bearer not-a-token"})
    await assert_refused(live_server, f"{path}?access_token=not-a-token")


async def test_invalid_token_is_refused_even_with_a_valid_session(live_server, alice, room):
    await assert_refused(
        live_server, f"/ws/rooms/{room}/", client=alice, headers={"Authorization": "Bearer not-a-token"}
    )


async def test_connection_beyond_the_per_user_limit_is_refused(live_server, room):
    live_server.create_user("many-tabs")  # a user of its own: the limit counts every room
    path = f"/ws/rooms/{room}/"
    async with login(live_server, "many-tabs") as client, contextlib.AsyncExitStack() as tabs:
        for _ in range(20):  # REALTIME_MAX_CONNECTIONS_PER_USER
            await joined(await tabs.enter_async_context(ws_connect(live_server, client, path)))

        await assert_refused(live_server, path, client=client)
