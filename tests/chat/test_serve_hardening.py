"""Hard to break under `make serve` (uvicorn with the Makefile's flags), through the chat's rooms.

The database pool on PostgreSQL under bursts of reads and handshakes, and
bodies and handshakes Django refuses, answered as clear errors, where the
defects showed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.live_client import bearer, cookie_header, recv_json
from tests.serve import served, uvicorn_with_guard
from tests.sse_client import login


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    """Assert the API's JSON error shape (the wire contract, section 2)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}


POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def postgres_reachable() -> None:
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is needed for this test and is not reachable: {exc}")


@pytest.mark.slow
async def test_make_serve_on_postgres_answers_a_burst_of_api_reads_and_handshakes(tmp_path, monkeypatch):
    """Bursts of 20 and 40 concurrent reads with a bearer token, and a handshake: no 500, no crash."""
    postgres_reachable()
    monkeypatch.setenv("DATABASE_URL", POSTGRES)  # the server gets a fresh database there
    room = f"burst-{uuid.uuid4().hex[:8]}"
    with served(tmp_path) as (server, log_path):
        token = server.create_token("alice")
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with (
            login(server.url, "bob") as bob,
            httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=30, limits=limits) as alice,
        ):
            csrf = {"X-CSRFToken": bob.cookies["csrftoken"]}
            assert (
                await bob.post(f"/api/rooms/{room}/messages", json={"text": "hi"}, headers=csrf)
            ).status_code == 201
            sessions = httpx.AsyncClient(base_url=server.url, cookies=bob.cookies, timeout=30, limits=limits)

            async def handshake() -> str:
                async with connect(
                    f"{server.ws_url}/ws/rooms/{room}/",
                    origin=server.url,
                    additional_headers=cookie_header(bob),
                    open_timeout=20,
                ) as ws:
                    return (await recv_json(ws, 20))["type"]

            for burst in (20, 40):
                reads = [alice.get(f"/api/rooms/{room}/messages") for _ in range(burst)]
                reads += [sessions.get(f"/api/rooms/{room}/messages") for _ in range(burst // 2)]
                answers = await asyncio.gather(handshake(), *reads)
                assert answers[0] == "hello"
                statuses = [r.status_code for r in answers[1:]]
                assert statuses == [200] * len(statuses), statuses
                assert all(r.json()["messages"][0]["text"] == "hi" for r in answers[1:])
            await sessions.aclose()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


@pytest.mark.slow
async def test_make_serve_on_postgres_answers_503_json_when_the_pool_is_truly_exhausted(
    tmp_path, monkeypatch
):
    """Requests hold every pooled connection (a table is locked): the next is a 503, and handshakes go on."""
    postgres_reachable()
    monkeypatch.setenv("DATABASE_URL", POSTGRES)
    room = f"pool-{uuid.uuid4().hex[:8]}"
    # Two connections: one is the realtime DB thread's, one for requests.
    with served(tmp_path, DATABASE_POOL_SIZE="2") as (server, log_path):
        token = server.create_token("alice")
        async with (
            login(server.url, "bob") as bob,
            httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=30) as alice,
        ):
            assert (
                await alice.get(f"/api/rooms/{room}/messages")
            ).status_code == 200  # the DB thread connects
            with psycopg.connect(server.env["DATABASE_URL"]) as locker:
                locker.execute("LOCK TABLE realtime_apitoken IN ACCESS EXCLUSIVE MODE")
                blocked = asyncio.create_task(alice.get(f"/api/rooms/{room}/messages"))
                await asyncio.sleep(0.5)  # it holds the requests' connection, waiting for the lock
                started = time.monotonic()
                response = await alice.get(f"/api/rooms/{room}/messages")
                assert_json_error(response, 503, "unavailable")
                assert time.monotonic() - started < 10
                # The realtime DB thread has a connection of its own: handshakes are still served.
                async with connect(
                    f"{server.ws_url}/ws/rooms/{room}/",
                    origin=server.url,
                    additional_headers=cookie_header(bob),
                    open_timeout=10,
                ) as ws:
                    assert (await recv_json(ws, 10))["type"] == "hello"
                assert not blocked.done()
                locker.rollback()  # the lock goes
            assert (await blocked).status_code == 200
            assert (await alice.get(f"/api/rooms/{room}/messages")).status_code == 200
    log = log_path.read_text(errors="replace")
    assert "Exception in ASGI application" not in log, log[-3000:]


async def raw_http(port: int, head: bytes, body: bytes = b"", timeout: float = 5) -> bytes:
    """Send ``head`` and ``body`` on a fresh TCP connection; return the server's whole answer.

    Read until the response's Content-Length is in, or the server closes: the
    headers and the body may come in separate segments.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                answer += chunk
                headers, separator, content = answer.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", headers)
                if separator and (length is None or len(content) >= int(length.group(1))):
                    break
        return answer
    finally:
        writer.close()


@pytest.mark.slow
async def test_make_serve_answers_bodies_and_handshakes_django_refuses_with_clear_errors(tmp_path):
    """Refused bodies and handshakes, and bodies before authentication, under uvicorn with DEBUG off."""
    with served(tmp_path) as (server, log_path):
        token = server.create_token("alice")
        async with (
            login(server.url, "alice") as alice,
            httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=30) as script,
        ):
            csrf = {"X-CSRFToken": alice.cookies["csrftoken"]}
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            many_fields = "&".join(f"f{n}=x" for n in range(2000))
            for client, extra in ((alice, csrf), (script, {})):
                response = await client.post("/api/tokens", content=many_fields, headers={**form, **extra})
                assert_json_error(response, 413, "too_large")
                big = "name=" + "x" * (3 * 1024 * 1024)
                response = await client.post("/api/tokens", content=big, headers={**form, **extra})
                assert_json_error(response, 413, "too_large")
                response = await client.post(
                    "/api/tokens",
                    content=b"--x\r\n",
                    headers={"Content-Type": "multipart/form-data", **extra},
                )
                assert_json_error(response, 400, "invalid")

            # A handshake with 1,100 query parameters: refused before accept, not a 500.
            # (Its URL stays under the 8 KiB that uvicorn's WebSocket parser accepts.)
            query = "&".join(["a=1"] * 1100)
            with pytest.raises(InvalidStatus) as refusal:
                async with connect(
                    f"{server.ws_url}/ws/rooms/x/?{query}",
                    origin=server.url,
                    additional_headers=cookie_header(alice),
                ):
                    pass
            assert refusal.value.response.status_code == 403

            # An anonymous 64 MiB body: 413 at once, before the client has sent it.
            started = time.monotonic()
            answer = await raw_http(
                server.port,
                b"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 67108864\r\n\r\n",
                b"x" * 1024,
            )
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b'"too_large"' in answer and time.monotonic() - started < 2

            # An authenticated tus upload of 200 KiB (over the anonymous limit) still works.
            data = os.urandom(200 * 1024)
            tus = {"Tus-Resumable": "1.0.0"}
            created = await alice.post(
                "/api/uploads/",
                headers={
                    **tus,
                    **csrf,
                    "Upload-Length": str(len(data)),
                    "Upload-Metadata": "filename YS5iaW4=,room eA==",
                },
            )
            assert created.status_code == 201, created.text
            patched = await alice.patch(
                created.headers["location"],
                content=data,
                headers={
                    **tus,
                    **csrf,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert patched.status_code == 204, patched.text
    log = log_path.read_text(errors="replace")
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.slow
async def test_uvicorn_with_the_guard_keeps_a_websocket_past_the_header_timeout(tmp_path):
    """The header timeout (realtime.serverguard) ends idle handshakes only, never a live socket."""
    with uvicorn_with_guard(tmp_path, REALTIME_HEADER_TIMEOUT="1") as server:
        token = server.create_token("alice")
        async with connect(f"{server.ws_url}/ws/rooms/guard/?access_token={token}") as ws:
            assert (await recv_json(ws))["type"] == "hello"
            await asyncio.sleep(1.5)  # past the header timeout: the socket lives on
            await ws.send(json.dumps({"type": "ping"}))
            while (await recv_json(ws))["type"] != "pong":  # past presence
                pass
