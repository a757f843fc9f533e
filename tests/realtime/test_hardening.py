"""Hard to break: the database pool, ended sessions, bodies Django refuses, bounded growth.

The in-process tests drive project.asgi.application, sockets through the
echo topic; the slow one runs uvicorn with the header-timeout guard. Those
through `make serve` and a topic of an app are the chat's
(tests/chat/test_serve_hardening.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone
from psycopg_pool import PoolTimeout

import realtime.asgi
import realtime.auth
import realtime.bodylimit
import realtime.handshake
from project.asgi import application
from realtime.db import db_call
from realtime.models import ApiToken
from realtime.sessions import SessionStore
from tests.asgi import csrf_token, echo_application, http, http_scope, make_user, session_cookie, ws
from tests.serve import uvicorn_with_guard

# The echo topic's socket (tests/realtime/echo.py): any topic's connection behaves so.
ROOM = "/ws/echo/general/"

# -- helpers ---------------------------------------------------------------------


def echo_ws(path: str, **kwargs):
    """Return a communicator to the project's app with the echo topic's WebSocket route."""
    return ws(path, app=echo_application(), **kwargs)


async def open_socket(cookie: str | None = None, path: str = ROOM, **kwargs):
    """Connect and read past hello and presence; return the communicator."""
    comm = echo_ws(path, cookie=cookie, **kwargs)
    assert (await comm.connect())[0], f"handshake to {path} refused"
    assert (await comm.receive_json_from())["type"] == "hello"
    assert (await comm.receive_json_from())["type"] == "presence"
    return comm


async def closed_with(comm, timeout: float) -> int:
    """Return the close code the server sent within ``timeout`` seconds, skipping events."""
    async with asyncio.timeout(timeout):
        while True:
            message = await comm.receive_output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code")


async def refused(comm) -> bool:
    """Return whether the handshake was closed before accept (HTTP 403 on a real server)."""
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return not connected


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    """Assert the API's JSON error shape (the wire contract, section 2)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}


def pool_timeout() -> OperationalError:
    """Return what Django raises when the psycopg pool has no connection to give within its timeout."""
    error = OperationalError("couldn't get a connection after 3.00 sec")
    error.__cause__ = PoolTimeout("couldn't get a connection after 3.00 sec")
    return error


# -- a database that cannot answer is a 503 or a refused handshake, never a 500 -------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("error", [pool_timeout(), PoolTimeout("raw, unwrapped")], ids=["wrapped", "raw"])
async def test_a_token_the_pool_cannot_look_up_is_a_503_json_and_a_refused_handshake(monkeypatch, error):
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)

    def unavailable(**kwargs):
        raise error

    monkeypatch.setattr(realtime.auth, "token_authenticate", unavailable)
    async with http(authorization=f"Bearer {raw}") as client:
        response = await client.get("/api/me")
    assert_json_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "2"
    assert await refused(echo_ws(f"{ROOM}?access_token={raw}", origin=None))


@pytest.mark.django_db(transaction=True)
async def test_a_database_error_while_loading_the_handshakes_session_refuses_it(monkeypatch):
    alice = await make_user("alice")
    cookie = await session_cookie(alice)

    def unavailable(user):
        raise pool_timeout()

    # Loading the user after the middleware ran, on the realtime DB thread.
    monkeypatch.setattr(realtime.handshake, "_unwrapped", unavailable)
    assert await refused(echo_ws(ROOM, cookie=cookie))


@pytest.mark.django_db(transaction=True)
async def test_a_session_request_gives_its_connection_back_before_the_view_runs(monkeypatch):
    """The session and user are loaded by the identity middleware, which then releases the connection."""
    alice = await make_user("alice")
    released = []
    real = realtime.auth.release_connections
    monkeypatch.setattr(realtime.auth, "release_connections", lambda: released.append(1) or real())
    async with http(cookie=await session_cookie(alice)) as client:
        response = await client.get("/api/me")
    assert response.status_code == 200
    assert released == [1]  # one hop: session, user and release together


# -- a deleted session ends its connections within a second ---------------------------------


@pytest.mark.django_db(transaction=True)
async def test_logging_in_as_someone_else_in_the_same_browser_closes_the_first_sessions_sockets():
    alice, bob = await make_user("alice"), await make_user("bob")
    first = await session_cookie(alice)
    socket_of_alice = await open_socket(first)
    async with http(cookie=first) as browser:
        token = await csrf_token(browser)
        response = await browser.post(
            "/accounts/login/",
            data={"username": "bob", "password": "bob", "csrfmiddlewaretoken": token},
        )
        assert response.status_code == 302
    # Django flushed alice's session: her socket may no longer post as her.
    assert await closed_with(socket_of_alice, timeout=1) == 4401
    assert not await Session.objects.filter(session_key=first.split("=", 1)[1]).aexists()
    assert bob  # the new session is bob's


@pytest.mark.django_db(transaction=True)
async def test_asking_who_am_i_with_an_ended_session_leaves_the_browsers_cookie_alone():
    """The page's probe after a 4401 may race the response that sets a new cookie: it must not delete it."""
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    await SessionStore(cookie.split("=", 1)[1]).aflush()
    async with http(cookie=cookie) as client:
        response = await client.get("/api/me")
    assert_json_error(response, 401, "unauthorized")
    assert "set-cookie" not in response.headers


@pytest.mark.django_db(transaction=True)
async def test_clearsessions_closes_the_sockets_of_the_expired_sessions_it_deletes():
    alice = await make_user("alice")
    expiring, staying = await session_cookie(alice), await session_cookie(alice)
    gone, kept = await open_socket(expiring), await open_socket(staying)
    key = expiring.split("=", 1)[1]
    await Session.objects.filter(session_key=key).aupdate(expire_date=timezone.now())
    await sync_to_async(call_command)("clearsessions")
    assert await closed_with(gone, timeout=1) == 4401
    await kept.send_json_to({"type": "ping"})
    assert (await kept.receive_json_from())["type"] == "pong"
    await kept.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_session_deleted_on_the_realtime_db_thread_closes_its_sockets():
    """Sync code on the DB thread (a handshake's middleware flushing a session) reaches the loop."""
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    comm = await open_socket(cookie)
    await db_call(lambda: SessionStore(cookie.split("=", 1)[1]).flush())()
    assert await closed_with(comm, timeout=1) == 4401


@pytest.mark.django_db(transaction=True)
async def test_a_session_deleted_from_async_code_closes_its_sockets():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    comm = await open_socket(cookie)
    await SessionStore(cookie.split("=", 1)[1]).aflush()
    assert await closed_with(comm, timeout=1) == 4401


@pytest.mark.django_db(transaction=True)
@override_settings(REALTIME_REVALIDATE_SECONDS=0.3)
async def test_what_no_notice_announces_closes_at_the_next_periodic_check():
    """Another process with the in-process layer cannot notify us: expiry and deactivation there."""
    alice, bob = await make_user("alice"), await make_user("bob")
    alices = await open_socket(await session_cookie(alice))
    bobs_cookie = await session_cookie(bob)
    bobs = await open_socket(bobs_cookie)
    await get_user_model().objects.filter(pk=alice.pk).aupdate(is_active=False)  # no signal
    key = bobs_cookie.split("=", 1)[1]
    await Session.objects.filter(session_key=key).aupdate(expire_date=timezone.now())  # expired
    assert await closed_with(alices, timeout=1.5) == 4403
    assert await closed_with(bobs, timeout=1.5) == 4401


# -- bodies and query strings Django refuses are clear errors, never HTML or a 500 ------------


@pytest.mark.django_db(transaction=True)
async def test_form_bodies_django_refuses_are_json_errors_under_api():
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    many_fields = "&".join(f"f{n}=x" for n in range(2000))
    big = "name=" + "x" * (3 * 1024 * 1024)
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with http(cookie=await session_cookie(alice)) as browser, http() as anonymous:
        csrf = {"x-csrftoken": await csrf_token(browser)}
        async with http(authorization=f"Bearer {raw}") as script:
            for client, extra in ((browser, csrf), (script, {})):
                assert_json_error(
                    await client.post("/api/tokens", content=many_fields, headers={**form, **extra}),
                    413,
                    "too_large",
                )
                assert_json_error(
                    await client.post("/api/tokens", content=big, headers={**form, **extra}), 413, "too_large"
                )
                assert_json_error(
                    await client.post(
                        "/api/tokens",
                        content=b"--x\r\n\r\n",
                        headers={"content-type": "multipart/form-data", **extra},
                    ),
                    400,
                    "invalid",
                )
            # A form body that parses still names the token.
            response = await script.post("/api/tokens", content="name=ci", headers=form)
            assert response.status_code == 201
        # With the CSRF cookie but no session, the form's token is read first, then refused as CSRF.
        await csrf_token(anonymous)
        response = await anonymous.post("/api/tokens", content=many_fields, headers=form)
        assert_json_error(response, 413, "too_large")
    assert await ApiToken.objects.filter(name="ci").aexists()


@pytest.mark.django_db(transaction=True)
async def test_a_handshake_with_too_many_query_parameters_is_refused_before_accept():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    query = "&".join(["a=1"] * 1100)
    assert await refused(echo_ws(f"{ROOM}?{query}", cookie=cookie))
    comm = await open_socket(cookie, path=f"{ROOM}?after=0&p=1")  # a few are fine
    await comm.disconnect()


# -- bounded growth: tokens per user, bodies before authentication -----------------------------


@pytest.mark.django_db(transaction=True)
@override_settings(REALTIME_MAX_TOKENS_PER_USER=3)
async def test_api_tokens_per_user_are_limited_and_a_revoked_one_frees_a_place():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with http(cookie=await session_cookie(alice)) as client:
        csrf = {"x-csrftoken": await csrf_token(client)}
        answers = await asyncio.gather(*(client.post("/api/tokens", headers=csrf) for _ in range(5)))
        assert sorted(r.status_code for r in answers) == [201, 201, 201, 429, 429]
        assert_json_error(next(r for r in answers if r.status_code == 429), 429, "rate_limited")
        token = await ApiToken.objects.filter(user=alice).afirst()
        token.revoked = True
        await token.asave()
        assert (await client.post("/api/tokens", headers=csrf)).status_code == 201
    assert await ApiToken.objects.filter(user=alice, revoked=False).acount() == 3
    async with http(cookie=await session_cookie(bob)) as client:
        csrf = {"x-csrftoken": await csrf_token(client)}
        assert (await client.post("/api/tokens", headers=csrf)).status_code == 201  # per user


async def call_app(scope_headers: list[tuple[bytes, bytes]], body: list[bytes], method: str = "POST"):
    """Call project.asgi.application once; return (status, body, how many body chunks it read)."""
    read = 0
    chunks = [{"type": "http.request", "body": b, "more_body": n < len(body) - 1} for n, b in enumerate(body)]
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return chunks[read - 1]
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = http_scope("/api/tokens", method=method, headers=scope_headers)
    await asyncio.wait_for(application(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], content, read


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_body_over_the_limit_is_refused_before_it_is_read(settings):
    settings.REALTIME_MAX_ANONYMOUS_BODY = 1000
    length = str(64 * 1024 * 1024).encode()
    status, content, read = await call_app([(b"content-length", length)], [b"x" * 1000] * 3)
    assert (status, read) == (413, 0)
    assert json.loads(content)["error"] == "too_large"
    # Chunked, without a length: read up to the limit only.
    status, _, read = await call_app([(b"transfer-encoding", b"chunked")], [b"x" * 600] * 10)
    assert (status, read) == (413, 2)
    # Under the limit, Django answers as before (no identity: 401/403).
    status, _, _ = await call_app([(b"content-length", b"2")], [b"{}"])
    assert status in (401, 403)
    # A forged token or session cookie is no credential: 413, the body unread (chunked: up to the limit).
    forged_cookie = (b"cookie", f"{settings.SESSION_COOKIE_NAME}=x".encode())
    status, _, read = await call_app(
        [(b"content-length", b"3000"), (b"authorization", b"Bearer nope")], [b"x" * 1000] * 3
    )
    assert (status, read) == (413, 0)
    status, _, read = await call_app([(b"content-length", b"3000"), forged_cookie], [b"x" * 1000] * 3)
    assert (status, read) == (413, 0)
    status, _, read = await call_app([(b"transfer-encoding", b"chunked"), forged_cookie], [b"x" * 600] * 3)
    assert (status, read) == (413, 2)
    # A live credential keeps Django's own limits: the whole body is read, Django answers.
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    status, _, read = await call_app(
        [(b"content-length", b"3000"), (b"authorization", f"Bearer {raw}".encode())], [b"x" * 1000] * 3
    )
    assert status != 413 and read == 3
    live_cookie = (b"cookie", (await session_cookie(alice)).encode())
    status, _, read = await call_app([(b"transfer-encoding", b"chunked"), live_cookie], [b"x" * 600] * 3)
    assert status == 403 and read == 3  # CSRF: no token
    # An expired session is no credential either.
    await Session.objects.all().aupdate(expire_date=timezone.now())
    status, _, read = await call_app([(b"content-length", b"3000"), live_cookie], [b"x" * 1000] * 3)
    assert (status, read) == (413, 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "length",
    [
        b"67108864 ",
        b"67108864\t",
        b" \t67108864",
        b"9999999999999999999",
        b"18446744073709551615",
        b"0" * 30 + b"3000",
    ],
    ids=["trailing-space", "trailing-tab", "leading-space", "19-digits", "2**64-1", "leading-zeros"],
)
async def test_a_content_length_is_read_as_the_http_servers_read_it(settings, length):
    """httptools passes a trailing space on and takes 19 digits; both were read as no body."""
    settings.REALTIME_MAX_ANONYMOUS_BODY = 1000
    status, content, read = await call_app([(b"content-length", length)], [b"x" * 1000] * 3)
    assert (status, read) == (413, 0)
    assert json.loads(content)["error"] == "too_large"
    # With a live credential the same length is honoured: Django reads the body.
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    headers = [(b"content-length", length), (b"authorization", f"Bearer {raw}".encode())]
    status, _, read = await call_app(headers, [b"x" * 1000] * 3)
    assert status != 413 and read == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"+3000")],
        [(b"content-length", b"3000, 3000")],
        [(b"content-length", b"0x10")],
        [(b"content-length", b"")],
        [(b"content-length", b"3" * 5000)],
        [(b"content-length", b"10"), (b"content-length", b"10")],
    ],
    ids=["sign", "list", "hex", "empty", "5000-digits", "twice"],
)
async def test_a_content_length_no_server_honours_is_a_400_before_the_body_is_read(headers):
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    for credential in ([], [(b"authorization", f"Bearer {raw}".encode())]):
        status, content, read = await call_app(headers + credential, [b"x" * 10])
        assert (status, read) == (400, 0)
        assert json.loads(content)["error"] == "invalid"


@pytest.mark.django_db(transaction=True)
async def test_a_large_body_with_a_credential_is_let_through_while_the_database_is_down(
    settings, monkeypatch
):
    settings.REALTIME_MAX_ANONYMOUS_BODY = 1000

    async def database_down(token, session_key):
        raise OperationalError("the database is down")

    monkeypatch.setattr(realtime.bodylimit, "_live", database_down)
    status, _, read = await call_app(
        [(b"content-length", b"3000"), (b"authorization", b"Bearer whatever")], [b"x" * 1000] * 3
    )
    assert status != 413 and read == 3  # Django's stack answers (503 when it needs the database)
    status, _, read = await call_app([(b"content-length", b"3000")], [b"x" * 1000] * 3)
    assert (status, read) == (413, 0)  # no credential at all: no lookup, refused as before


# -- through uvicorn ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_uvicorn_with_the_guard_closes_a_connection_that_never_sends_its_headers(tmp_path):
    """uvicorn has no header timeout of its own; realtime.serverguard adds one."""
    with uvicorn_with_guard(tmp_path, REALTIME_HEADER_TIMEOUT="1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server
            assert 0.5 < time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            started = time.monotonic()
            for line in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
                with contextlib.suppress(OSError):
                    slow.sendall(line)  # a byte now and then does not stretch the deadline
                await asyncio.sleep(0.4)
            with contextlib.suppress(ConnectionResetError):
                assert slow.recv(1024) == b""
            assert time.monotonic() - started < 5
        # Complete headers are not limited: a request, a kept-alive second one (a WebSocket: the
        # chat's test_uvicorn_with_the_guard_keeps_a_websocket_past_the_header_timeout).
        with httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=1)) as kept:
            for _ in range(3):
                assert kept.get("/healthz").status_code == 200
                time.sleep(0.6)  # between requests the keep-alive timeout applies (5 s)
