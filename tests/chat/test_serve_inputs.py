"""Bad input through `make serve` (uvicorn with the Makefile's flags, DEBUG off), where it showed.

One server for the module; each test uses rooms of its own. Raw sockets
send what a well-behaved client library would refuse to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import LiveServer
from tests.live_client import bearer, joined, ws_connect
from tests.serve import logged_line, served

pytestmark = pytest.mark.slow

# Generous: a server that answers does so at once; this only ends a test whose server never does.
GUARD = 15


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[tuple[LiveServer, Path]]:
    """Run `make serve` once for the module; yield the server and the path of its log."""
    with served(tmp_path_factory.mktemp("serve")) as (server, log_path):
        yield server, log_path


@pytest.fixture(scope="module")
def token(serve) -> str:
    """Return an API token of alice's."""
    return serve[0].create_token("alice")


def room() -> str:
    """Return a fresh room slug."""
    return f"t-{uuid.uuid4().hex[:12]}"


def upgrade(port: int, target: str, *extra: str) -> bytes:
    """Return the head of a WebSocket upgrade of ``target`` with ``extra`` header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def until_closed(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; return all the server sent before it closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        answer = b""
        try:
            async with asyncio.timeout(GUARD):
                while chunk := await reader.read(65536):
                    answer += chunk
        except TimeoutError:
            pytest.fail(f"the server left the connection open; it sent {answer[:200]!r}")
        except ConnectionResetError:
            pass  # closed with unread input: what was sent before is in answer
        return answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    """Assert the API's JSON error shape."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    assert response.json()["error"] == code


def assert_no_traceback(log_path: Path) -> None:
    """Assert the server logged no failure of its own."""
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


async def test_a_multipart_body_to_a_json_endpoint_is_a_json_400(serve, token):
    server, log_path = serve
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=GUARD) as client:
        slug = room()
        response = await client.post(
            f"/api/rooms/{slug}/messages",
            content=b"anything",
            headers={"Content-Type": "multipart/form-data; boundary=zz"},
        )
        assert_json_error(response, 400, "bad_json")
        response = await client.post(
            f"/api/rooms/{slug}/messages", data={"text": "hi"}, files={"f": ("a.txt", b"hi")}
        )
        assert_json_error(response, 400, "bad_json")
        assert (await client.get(f"/api/rooms/{slug}/messages")).json() == {"messages": []}
    assert_no_traceback(log_path)


@pytest.mark.parametrize(
    ("target", "extra", "status"),
    [
        (f"/ws/rooms/lobby/?q={'x' * 9000}", (), b"414"),
        ("/ws/rooms/lobby/", (f"Cookie: c={'x' * 9000}",), b"431"),
        ("/ws/rooms/lobby/", tuple(f"X-H{n}: 1" for n in range(130)), b"431"),
    ],
    ids=["long-request-line", "long-header", "many-headers"],
)
async def test_an_upgrade_the_websocket_parser_refuses_is_answered_and_closed(serve, target, extra, status):
    """httptools takes the request; uvicorn's WebSocket parser refused it and left the socket open."""
    server, log_path = serve
    answer = await until_closed(server.port, upgrade(server.port, target, *extra))
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    # The server still serves, and its header timeout did not have to close anything.
    assert httpx.get(f"{server.url}/healthz", timeout=GUARD).status_code == 200
    logged_line(log_path, "Invalid WebSocket handshake received")
    assert_no_traceback(log_path)


async def test_a_refused_handshake_cannot_forge_or_colour_a_log_line(serve):
    """The handshake's refusal logs the decoded path: a line break in it started a line of its own."""
    server, log_path = serve
    marker = uuid.uuid4().hex[:8]
    paths = {
        f"/ws/rooms/a{marker}%0d%0aFORGED-CRLF/": f"a{marker}\\r\\nFORGED-CRLF/",
        f"/ws/rooms/b{marker}%1b[31mred/": f"b{marker}\\x1b[31mred/",
        f"/ws/rooms/c{marker}%c2%85FORGED-NEL/": f"c{marker}\\x85FORGED-NEL/",
        f"/ws/rooms/d{marker}%e2%80%a8FORGED-LS%e2%80%a9/": f"d{marker}\\u2028FORGED-LS\\u2029/",
    }
    for target, logged in paths.items():
        answer = await until_closed(server.port, upgrade(server.port, target, f"Origin: {server.url}"))
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
        logged_line(log_path, f"WebSocket handshake refused: /ws/rooms/{logged}")
    log = log_path.read_bytes()
    for raw in (b"\x1b", "\x85".encode(), "\u2028".encode(), "\u2029".encode(), b"\r"):
        assert raw not in log, raw
    assert not [line for line in log.split(b"\n") if line.startswith(b"FORGED")]


@pytest.mark.parametrize("length", ["67108864 ", "9999999999999999999"], ids=["trailing-space", "19-digits"])
@pytest.mark.parametrize(
    "request_line",
    ["POST /api/rooms/lobby/messages", "PATCH /api/uploads/0123456789abcdef"],
    ids=["message", "upload"],
)
async def test_an_anonymous_body_over_the_limit_is_a_413_whatever_its_length_looks_like(
    serve, request_line, length
):
    """Both lengths are ones httptools honours, and were read as no length: the whole body was read."""
    server, log_path = serve
    head = (
        f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    # The server answers after a few bytes of a body it was told is 64 MiB or more: it did not read it.
    answer = await until_closed(server.port, head.encode() + b"x" * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer
    assert_no_traceback(log_path)


def closed_count(server: LiveServer, code: str) -> float:
    """Return how many room WebSockets /metrics counts as closed with ``code``."""
    text = httpx.get(f"{server.url}/metrics", timeout=GUARD).text
    for labels, value in re.findall(r"(?m)^realtime_connections_closed_total\{([^}]*)\} (\S+)$", text):
        if {'transport="websocket"', 'topic="room"', f'code="{code}"'} <= set(labels.split(",")):
            return float(value)
    return 0.0


async def counted(server: LiveServer, code: str, at_least: float) -> float:
    """Wait until /metrics counts ``at_least`` room WebSockets closed with ``code``; return the count."""
    async with asyncio.timeout(GUARD):
        while (count := closed_count(server, code)) < at_least:
            await asyncio.sleep(0.05)
    return count


async def send_invalid_utf8(ws) -> None:
    """Send a text frame whose bytes are not UTF-8."""
    await ws.send(b"\xff\xfe not UTF-8", text=True)


async def send_too_big(ws) -> None:
    """Send a message over `make serve`'s --ws-max-size (1 MiB)."""
    await ws.send("x" * (1024 * 1024 + 1))


async def send_reserved_bit(ws) -> None:
    """Send a masked, empty text frame with RSV1 set, which no extension was negotiated for."""
    ws.transport.write(b"\xc1\x80" + b"\x00" * 4)


@pytest.mark.parametrize(
    ("code", "send"),
    [("1007", send_invalid_utf8), ("1009", send_too_big), ("1002", send_reserved_bit)],
    ids=["invalid-utf8", "too-big", "protocol-error"],
)
async def test_a_socket_failed_for_what_its_client_sent_is_counted_by_its_code_and_logged_once(
    serve, token, code, send
):
    """Each was counted as code=other, and each invalid UTF-8 message logged an ERROR with a traceback."""
    server, log_path = serve
    before = closed_count(server, code)
    async with ws_connect(server, None, f"/ws/rooms/{room()}/?access_token={token}", origin=None) as ws:
        await joined(ws)
        await send(ws)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), GUARD)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == int(code)
    assert await counted(server, code, before + 1) == before + 1
    if code == "1007":
        logged_line(log_path, "1007: a text message is not valid UTF-8")
        assert "Invalid UTF-8 sequence" not in log_path.read_text(errors="replace")
    assert_no_traceback(log_path)
