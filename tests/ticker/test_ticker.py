"""The ticker (the wire contract, docs/contract.md, section 7) through project.asgi.application, in-process.

The feed is the app's background job: the first ASGI call of a test starts
it on that test's event loop (realtime.background), and the autouse fixture
below stops it when the test ends. TICKER_INTERVAL is 0.2 s here.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

import pytest

from realtime import background
from realtime.db import db_call
from realtime.models import ApiToken
from tests.asgi import InProcessStream, csrf_token, http, make_user, session_cookie, sse_stream, ws
from ticker import feed
from ticker.topic import SYMBOLS

pytestmark = pytest.mark.django_db(transaction=True)

TICKER = "/ws/ticker/"
SSE = "/sse/ticker/"
API = "/api/ticker"
INTERVAL = 0.2
TWO_DECIMALS = re.compile(r"-?\d+\.\d\d\Z")
WAIT = 5.0  # a generous wait for one event (ticks come every INTERVAL)


@pytest.fixture(autouse=True)
async def _fast_feed_stopped_after(settings):
    """Tick every 0.2 s; stop the feed (started by the test's first ASGI call) when the test ends."""
    settings.TICKER_INTERVAL = INTERVAL
    yield
    await background.stop()
    await db_call(lambda: None)()  # let a credential check still in the DB thread finish first


# -- helpers -----------------------------------------------------------------


def assert_snapshot(event: dict) -> None:
    """Check the shape of a ``prices`` event (section 7)."""
    assert set(event) == {"type", "seq", "prices", "at"}, event
    assert event["type"] == "prices"
    assert isinstance(event["seq"], int) and event["seq"] >= 0
    assert len(event["prices"]) >= 5
    for symbol, quote in event["prices"].items():
        assert set(quote) == {"price", "change"}, (symbol, quote)
        assert isinstance(quote["price"], str) and TWO_DECIMALS.match(quote["price"]), quote
        assert isinstance(quote["change"], str) and TWO_DECIMALS.match(quote["change"]), quote
        assert float(quote["price"]) > 0
    assert datetime.fromisoformat(event["at"]).utcoffset() is not None  # ISO-8601 with an offset


async def open_ticker(cookie: str | None = None, path: str = TICKER, **kwargs):
    """Connect to the ticker socket; return the communicator, handshake accepted."""
    comm = ws(path, cookie=cookie, **kwargs)
    connected, code = await comm.connect()
    assert connected, f"ticker handshake refused ({code})"
    return comm


async def next_json(comm, timeout: float = WAIT) -> dict:
    return await comm.receive_json_from(timeout)


async def next_prices(comm, timeout: float = WAIT) -> dict:
    """Return the next ``prices`` event, skipping nothing else: the ticker sends nothing else unasked."""
    event = await next_json(comm, timeout)
    assert event["type"] == "prices", event
    return event


async def next_of_type(comm, kind: str, timeout: float = WAIT) -> dict:
    """Return the next event of type ``kind``, skipping the ticks in between."""
    deadline = asyncio.get_running_loop().time() + timeout
    # The communicator's own timeout, not an outer one: it raises the app's exception, if any.
    while (event := await next_json(comm, deadline - asyncio.get_running_loop().time()))["type"] != kind:
        assert event["type"] == "prices", event
    return event


async def closed_with(comm, timeout: float) -> int | None:
    """Return the close code the server sends within ``timeout`` s, skipping events."""
    async with asyncio.timeout(timeout):
        while True:
            message = await comm.receive_output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code")


async def api_seq(client) -> int:
    response = await client.get(API)
    assert response.status_code == 200, response.text
    return response.json()["seq"]


def sse(path: str = SSE, *, cookie: str | None = None, **headers: str) -> InProcessStream:
    return sse_stream(path, cookie=cookie, **headers)


# -- the feed -------------------------------------------------------------------


async def test_two_feeds_at_once_never_publish_the_same_or_an_older_seq(monkeypatch):
    """A leader that lost its lock and the one that took over: each seq is published once, in order."""
    published: list[int] = []

    async def record(topic, event):
        published.append(event["seq"])

    monkeypatch.setattr(feed, "publish", record)
    feeds = [asyncio.create_task(feed.run()) for _ in range(2)]
    await asyncio.sleep(INTERVAL * 8)
    for task in feeds:
        task.cancel()
    await asyncio.gather(*feeds, return_exceptions=True)
    assert len(published) >= 5, published
    assert published == sorted(set(published)), published


# -- WebSocket /ws/ticker/ ------------------------------------------------------


async def test_websocket_says_hello_with_the_user_and_the_ticker_topic_on_accept():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    assert await next_json(comm) == {
        "type": "hello",
        "user": {"id": alice.pk, "username": "alice"},
        "topic": "ticker",
    }
    await comm.disconnect()


async def test_websocket_sends_the_latest_snapshot_right_after_hello():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    assert (await next_json(comm))["type"] == "hello"
    snapshot = await next_prices(comm)
    assert_snapshot(snapshot)
    assert set(snapshot["prices"]) == set(SYMBOLS)
    await comm.disconnect()


async def test_websocket_live_prices_increase_seq_by_exactly_one():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    seqs = [(await next_prices(comm))["seq"] for _ in range(6)]  # the snapshot, then 5 live ticks
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    await comm.disconnect()


async def test_live_prices_events_have_the_snapshot_shape_and_move_by_their_change():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    before, after = await next_prices(comm), await next_prices(comm)
    assert_snapshot(after)
    for symbol, quote in after["prices"].items():
        moved = float(quote["price"]) - float(before["prices"][symbol]["price"])
        assert round(moved, 2) == float(quote["change"]), (symbol, before["prices"][symbol], quote)
    await comm.disconnect()


async def test_ping_is_answered_with_pong():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    await comm.send_json_to({"type": "ping"})
    assert await next_of_type(comm, "pong") == {"type": "pong"}
    await comm.disconnect()


async def test_a_message_frame_gets_unknown_type_and_the_socket_stays_open():
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    await comm.send_json_to({"type": "message", "text": "x"})
    error = await next_of_type(comm, "error")
    assert error["code"] == "unknown_type" and isinstance(error["detail"], str)
    await comm.send_json_to({"type": "ping"})
    assert await next_of_type(comm, "pong") == {"type": "pong"}
    assert (await next_of_type(comm, "prices"))["type"] == "prices"  # and ticks keep coming
    await comm.disconnect()


@pytest.mark.parametrize("kind", ["typing", "subscribe", "prices", "hello"])
async def test_any_other_frame_type_gets_unknown_type_and_the_socket_stays_open(kind):
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    await comm.send_json_to({"type": kind})
    error = await next_of_type(comm, "error")
    assert error["code"] == "unknown_type", error
    await comm.send_json_to({"type": "ping"})
    assert await next_of_type(comm, "pong") == {"type": "pong"}
    await comm.disconnect()


async def test_a_handler_frame_gets_unknown_type_rather_than_crashing_the_socket():
    # Frames go to the topic's frame_<type> methods: no method of the core may match one
    # (a "handler" frame once reached the core's own lookup method and crashed the socket).
    alice = await make_user("alice")
    comm = await open_ticker(await session_cookie(alice))
    await next_json(comm)
    await comm.send_json_to({"type": "handler"})
    error = await next_of_type(comm, "error")
    assert error["code"] == "unknown_type", error
    await comm.send_json_to({"type": "ping"})
    assert await next_of_type(comm, "pong") == {"type": "pong"}
    await comm.disconnect()


async def test_websocket_without_identity_is_refused_before_accept():
    comm = ws(TICKER)
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_reconnecting_client_gets_the_latest_snapshot_not_a_replay_of_every_tick():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    first = await open_ticker(cookie)
    await next_json(first)
    seen = (await next_prices(first))["seq"]
    await first.disconnect()
    async with http(cookie=cookie) as client:
        async with asyncio.timeout(WAIT):
            while await api_seq(client) < seen + 3:  # several ticks missed
                await asyncio.sleep(INTERVAL / 2)
        # ?after= means nothing to a snapshot topic: still no replay.
        again = await open_ticker(cookie, path=f"{TICKER}?after={seen}")
        assert (await next_json(again))["type"] == "hello"
        snapshot = await next_prices(again)
        latest = await api_seq(client)
    assert latest - 1 <= snapshot["seq"] <= latest  # the latest (a tick may have come since)
    assert snapshot["seq"] >= seen + 3
    assert (await next_prices(again))["seq"] == snapshot["seq"] + 1  # then live, no catch-up burst
    await again.disconnect()


# -- GET /api/ticker -----------------------------------------------------------------------


async def test_api_without_identity_is_401_json():
    async with http() as client:
        response = await client.get(API)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unauthorized"


async def test_api_with_a_session_returns_the_snapshot():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        response = await client.get(API)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_snapshot(response.json())
    assert set(response.json()["prices"]) == set(SYMBOLS)


async def test_api_with_a_bearer_token_returns_the_snapshot():
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    async with http(Authorization=f"Bearer {raw}") as client:
        response = await client.get(API)
    assert response.status_code == 200
    assert_snapshot(response.json())


async def test_api_with_a_wrong_bearer_token_is_401():
    await make_user("alice")
    async with http(Authorization="Bearer not-a-token") as client:
        response = await client.get(API)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_api_websocket_and_sse_show_the_same_seq_at_the_same_moment():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    socket = await open_ticker(cookie)
    await next_json(socket)
    async with http(cookie=cookie) as client, sse(cookie=cookie) as stream:
        assert (await stream.next_event()).event == "hello"
        ws_first = (await next_prices(socket))["seq"]
        sse_first = int((await stream.next_event()).id)
        assert abs(ws_first - sse_first) <= 1  # the two snapshots: a tick may fall between

        n = (await next_prices(socket))["seq"]  # a tick just came
        assert (await api_seq(client)) - n in (0, 1)  # the API shows it (or the next one)
        while (sse_seq := int((await stream.next_event()).id)) < n:
            pass
        assert sse_seq == n  # SSE shows the same tick (not one beyond it)

        # Each client that saw n next sees n + 1.
        assert (await next_prices(socket))["seq"] == n + 1
        assert int((await stream.next_event()).id) == n + 1
        async with asyncio.timeout(WAIT):
            while (seq := await api_seq(client)) <= n:
                await asyncio.sleep(INTERVAL / 4)
        assert seq in (n + 1, n + 2)  # the API moved on to n + 1 (or already past it)
    await socket.disconnect()


async def test_api_seq_moves_by_one_per_tick():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        seen = [await api_seq(client)]
        async with asyncio.timeout(WAIT * 2):
            while len(seen) < 5:
                if (seq := await api_seq(client)) != seen[-1]:
                    seen.append(seq)
                await asyncio.sleep(INTERVAL / 5)
    assert seen == list(range(seen[0], seen[0] + 5))


# -- GET /sse/ticker/ ----------------------------------------------------------------------


async def test_sse_sends_hello_first_then_prices_with_seq_ids():
    alice = await make_user("alice")
    async with sse(cookie=await session_cookie(alice)) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        hello = await stream.next_event()
        assert (hello.event, hello.id, hello.data) == (
            "hello",
            None,
            {"type": "hello", "user": {"id": alice.pk, "username": "alice"}, "topic": "ticker"},
        )
        events = [await stream.next_event() for _ in range(4)]  # the snapshot, then live ticks
    for event in events:
        assert event.event == "prices"
        assert_snapshot(event.data)
        assert event.id == str(event.data["seq"])
    seqs = [e.data["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 4))


async def test_sse_with_a_bearer_token_works():
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    async with sse(Authorization=f"Bearer {raw}") as stream:
        assert stream.status == 200
        assert (await stream.next_event()).data["user"]["username"] == "alice"
        assert (await stream.next_event()).event == "prices"


async def test_sse_keep_alives_arrive_as_configured(settings):
    settings.TICKER_INTERVAL = 30  # a quiet ticker: only keep-alives between the snapshot and the next tick
    settings.REALTIME_SSE_KEEPALIVE = 0.2
    alice = await make_user("alice")
    async with sse(cookie=await session_cookie(alice)) as stream:
        assert (await stream.next()).event == "hello"
        assert (await stream.next()).event == "prices"
        comments = [await stream.next(timeout=WAIT) for _ in range(3)]
    assert [c.event for c in comments] == [":", ":", ":"]


async def test_sse_without_identity_is_401():
    async with sse() as stream:
        body = await stream.body()
    assert stream.status == 401
    assert json.loads(body)["error"] == "unauthorized"


async def test_sse_last_event_id_does_not_replay_ticks():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    async with http(cookie=cookie) as client:
        async with asyncio.timeout(WAIT):
            while await api_seq(client) < 4:
                await asyncio.sleep(INTERVAL / 2)
        async with sse(cookie=cookie, **{"Last-Event-ID": "1"}) as stream:
            await stream.next_event()
            snapshot = await stream.next_event()
            latest = await api_seq(client)
            assert latest - 1 <= snapshot.data["seq"] <= latest
            assert int((await stream.next_event()).id) == snapshot.data["seq"] + 1


# -- GET /ticker/ -------------------------------------------------------------------------------


async def test_dashboard_without_login_redirects_to_the_login_page():
    async with http() as client:
        response = await client.get("/ticker/")
    assert response.status_code == 302
    assert response.headers["location"] == "/accounts/login/?next=/ticker/"


async def test_dashboard_renders_the_table_for_a_logged_in_user():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        current = (await client.get(API)).json()
        response = await client.get("/ticker/")
    assert response.status_code == 200
    page = response.text
    assert 'id="ticker"' in page and 'id="ticker-rows"' in page and 'id="ticker-seq"' in page
    for symbol in SYMBOLS:
        assert f'<tr data-symbol="{symbol}">' in page
    embedded = re.search(r'<script id="ticker-snapshot" type="application/json">(.*?)</script>', page)
    assert embedded, "the page embeds the latest snapshot"
    snapshot = json.loads(embedded.group(1))
    assert_snapshot(snapshot)
    assert snapshot["seq"] - current["seq"] in (0, 1)
    assert "data-live-status" in page  # the live transport is shown, as on the room page
    assert "ticker/ticker.js" in page and "realtime/live-client.js" in page


# -- lifecycle from the core ------------------------------------------------------------------


async def test_logout_closes_the_ticker_socket_with_4401_within_a_second():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    comm = await open_ticker(cookie)
    await next_json(comm)
    async with http(cookie=cookie) as client:
        token = await csrf_token(client)
        response = await client.post("/accounts/logout/", headers={"x-csrftoken": token})
    assert response.status_code == 302
    assert await closed_with(comm, timeout=1.0) == 4401  # the contract's bound


async def test_logout_ends_the_ticker_sse_stream():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    async with sse(cookie=cookie) as stream:
        await stream.next_event()
        async with http(cookie=cookie) as client:
            token = await csrf_token(client)
            response = await client.post("/accounts/logout/", headers={"x-csrftoken": token})
        assert response.status_code == 302
        with pytest.raises(EOFError):
            async with asyncio.timeout(1.0):
                while True:
                    await stream.next()


async def test_the_per_user_connection_limit_counts_ticker_sockets(settings):
    settings.REALTIME_MAX_CONNECTIONS_PER_USER = 2
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    held = [await open_ticker(cookie), await open_ticker(cookie)]
    for path in (TICKER, "/ws/rooms/lobby/"):
        extra = ws(path, cookie=cookie)
        assert not (await extra.connect())[0], f"{path}: a third connection was accepted"
        await extra.disconnect()
    async with sse(cookie=cookie) as stream:
        body = await stream.body()
    assert stream.status == 403 and json.loads(body)["error"] == "forbidden"
    await held.pop().disconnect()
    again = await open_ticker(cookie)  # a closed ticker socket gives its slot back
    assert (await next_json(again))["type"] == "hello"
    for comm in (*held, again):
        await comm.disconnect()


async def test_the_per_user_connection_limit_counts_ticker_streams(settings):
    settings.REALTIME_MAX_CONNECTIONS_PER_USER = 1
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    async with sse(cookie=cookie) as stream:
        assert (await stream.next_event()).event == "hello"
        extra = ws(TICKER, cookie=cookie)
        assert not (await extra.connect())[0]
        await extra.disconnect()
