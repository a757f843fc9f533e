"""One identity, end to end: ending a credential ends its live connections."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from realtime.db import db_call
from realtime.models import ApiToken
from tests.asgi import csrf_token, echo_application, http, make_user, session_cookie, ws

pytestmark = pytest.mark.django_db(transaction=True)

# The echo topic (tests/realtime/echo.py): ending a credential ends any topic's connections.
ROOM = "/ws/echo/general/"


@pytest.fixture(autouse=True)
async def _credential_checks_finished():
    """Let a periodic credential check still running in the realtime DB thread finish before the
    database is flushed: SQLite's shared-cache test database refuses a flush while another
    connection reads."""
    yield
    await db_call(lambda: None)()  # one thread, calls in order: when this returns, the check is done


async def open_socket(cookie: str | None = None, path: str = ROOM, **kwargs):
    """Connect and read past hello and presence; return the communicator."""
    comm = ws(path, cookie=cookie, app=echo_application(), **kwargs)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["type"] == "hello"
    assert (await comm.receive_json_from())["type"] == "presence"
    return comm


async def closed_with(comm, timeout: float = 3) -> int:
    """Return the close code the server sent, skipping events."""
    while True:
        message = await comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            return message.get("code")


async def still_open(comm) -> bool:
    """Return whether the socket answers a ping."""
    await comm.send_json_to({"type": "ping"})
    while True:
        message = await comm.receive_output(2)
        if message["type"] == "websocket.close":
            return False
        if '"pong"' in message.get("text", ""):
            return True


async def test_logout_over_http_closes_that_sessions_sockets_only():
    alice = await make_user("alice")
    leaving, staying = await session_cookie(alice), await session_cookie(alice)
    a1, a2 = await open_socket(leaving), await open_socket(staying)
    async with http(cookie=leaving) as client:
        token = await csrf_token(client)
        response = await client.post("/accounts/logout/", headers={"x-csrftoken": token})
    assert response.status_code == 302
    assert await closed_with(a1) == 4401
    assert await still_open(a2)
    await a2.disconnect()


async def test_password_change_closes_every_socket_of_the_old_keys_and_the_changer_reconnects():
    # The changer's own socket closes too: it was opened with the old session key, which a
    # copied cookie may hold as well. The changer's page reconnects with its new cookie
    # (live-client.js asks /api/me after 4401), as the last lines do.
    alice = await make_user("alice", password="old-secret-1")
    changer, other = await session_cookie(alice), await session_cookie(alice)
    mine, copied, theirs = await open_socket(changer), await open_socket(changer), await open_socket(other)
    async with http(cookie=changer) as client:
        token = await csrf_token(client)
        response = await client.post(
            "/accounts/password_change/",
            data={
                "old_password": "old-secret-1",
                "new_password1": "N3w-secret-99",
                "new_password2": "N3w-secret-99",
            },
            headers={"x-csrftoken": token},
        )
        assert response.status_code == 302, response.text[:300]
        assert await closed_with(mine, timeout=1) == 4401
        assert await closed_with(copied, timeout=1) == 4401
        assert await closed_with(theirs) == 4401
        new_cookie = f"{settings.SESSION_COOKIE_NAME}={response.cookies[settings.SESSION_COOKIE_NAME]}"
        assert new_cookie != changer
    async with http(cookie=new_cookie) as changed:
        assert (await changed.get("/api/me")).json()["username"] == "alice"
    reconnected = await open_socket(new_cookie)
    assert await still_open(reconnected)
    await reconnected.disconnect()
    async with http(cookie=changer) as stale:
        assert (await stale.get("/api/me")).status_code == 401


async def test_password_set_in_the_shell_closes_every_session():
    alice = await make_user("alice")
    comm = await open_socket(await session_cookie(alice))
    alice.set_password("another-pass-77")
    await alice.asave()
    assert await closed_with(comm) == 4401


async def test_deactivating_a_user_closes_all_their_connections_with_4403():
    alice, bob = await make_user("alice"), await make_user("bob")
    _, raw = await ApiToken.aissue(alice)
    by_session = await open_socket(await session_cookie(alice))
    by_token = await open_socket(path=f"{ROOM}?access_token={raw}", origin=None)
    bobs = await open_socket(await session_cookie(bob))
    alice.is_active = False
    await alice.asave()
    assert await closed_with(by_session) == 4403
    assert await closed_with(by_token) == 4403
    assert await still_open(bobs)
    await bobs.disconnect()


async def test_deactivation_in_the_admin_closes_connections():
    alice = await make_user("alice")
    comm = await open_socket(await session_cookie(alice))
    admin = await sync_to_async(get_user_model().objects.create_superuser)("root", password="root")
    client = Client()
    await sync_to_async(client.force_login)(admin)
    data = {"username": "alice", "is_active": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = await sync_to_async(client.post)(f"/admin/auth/user/{alice.pk}/change/", data)
    assert response.status_code == 302
    assert await closed_with(comm) == 4403


async def test_revoking_a_token_closes_the_connections_opened_with_it_only():
    alice = await make_user("alice")
    token, raw = await ApiToken.aissue(alice)
    by_token = await open_socket(path=f"{ROOM}?access_token={raw}", origin=None)
    by_session = await open_socket(await session_cookie(alice))
    token.revoked = True
    await token.asave()
    assert await closed_with(by_token) == 4401
    assert await still_open(by_session)
    await by_session.disconnect()


@override_settings(REALTIME_REVALIDATE_SECONDS=0.2)
async def test_expired_session_closes_on_the_next_periodic_check():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    comm = await open_socket(cookie)
    assert await still_open(comm)
    await Session.objects.filter(session_key=cookie.split("=", 1)[1]).adelete()
    assert await closed_with(comm) == 4401


@override_settings(REALTIME_REVALIDATE_SECONDS=0.2)
async def test_valid_session_survives_periodic_checks():
    alice = await make_user("alice")
    comm = await open_socket(await session_cookie(alice))
    assert await comm.receive_nothing(timeout=0.8)
    assert await still_open(comm)
    await comm.disconnect()
