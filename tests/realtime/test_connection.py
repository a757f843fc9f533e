"""The core's connection lifecycle, through a tiny test topic (tests/realtime/echo.py).

These read as the recipe for a new app: a Topic subclass, TopicConsumer for
its WebSocket, stream_view for its SSE stream, and nothing else. They also
prove the lifecycle's promise: whatever a connection takes (a slot, its
memberships, a credential watch, a shutdown closer, a presence entry) is
given back on every exit path.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from channels.layers import get_channel_layer
from django.core.asgi import get_asgi_application
from django.test import override_settings
from prometheus_client import REGISTRY

import realtime.asgi
from realtime import background, connection, memberships, publish
from realtime.credentials import Credential
from realtime.process import process
from realtime.sse import EventStream
from tests.asgi import http, http_scope, make_user, session_cookie, sse_stream, ws
from tests.realtime.echo import LOG, EchoTopic, said

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app():
    """The project's ASGI app with the echo topic's WebSocket route."""
    LOG.clear()
    return realtime.asgi.application(get_asgi_application(), "tests.realtime.echo_routes")


@pytest.fixture
async def alice():
    return await make_user("alice")


def metrics_sample(name: str, **labels: str) -> float:
    """Return a sample of the process's Prometheus registry (0 before it first moved)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def held_by(user) -> dict:
    """Return what the process holds for ``user``: slots, live connections, presence, memberships."""
    layer = get_channel_layer()
    return {
        "slots": process.slots.user_connections.get(user.pk, 0),
        "live": memberships.count(),
        "online": dict(process.presence.topics.get(EchoTopic("a").group).online)
        if EchoTopic("a").group in process.presence.topics
        else {},
        "members": sum(len(members) for members in layer.groups.values()),
    }


NOTHING = {"slots": 0, "live": 0, "online": {}, "members": 0}


async def settled(user) -> dict:
    """Return ``held_by(user)`` once the release's group discards (a task) have run."""
    for _ in range(50):
        if held_by(user) == NOTHING:
            break
        await asyncio.sleep(0.02)
    return held_by(user)


async def open_echo(app, user, path: str = "/ws/echo/a/"):
    comm = ws(path, cookie=await session_cookie(user), app=app)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_a_topic_sends_hello_then_presence_and_runs_its_frames(app, alice):
    comm = await open_echo(app, alice)
    assert await comm.receive_json_from() == {
        "type": "hello",
        "user": {"id": alice.pk, "username": "alice"},
        "echo": "a",
        "last_id": 0,
    }
    assert await comm.receive_json_from() == {"type": "presence", "users": ["alice"]}
    await comm.send_json_to({"type": "say", "text": "hi"})
    assert await comm.receive_json_from() == {"type": "said", "id": 1, "text": "hi"}
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from() == {"type": "pong"}
    await comm.send_json_to({"type": "shout"})
    assert (await comm.receive_json_from())["code"] == "unknown_type"
    await comm.disconnect()


async def test_catch_up_replays_after_an_id_and_skips_the_same_events_live(app, alice):
    for n in range(3):
        said("a", f"m{n}")
    comm = ws("/ws/echo/a/?after=1", cookie=await session_cookie(alice), app=app)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["last_id"] == 3
    assert [(await comm.receive_json_from())["id"] for _ in range(2)] == [2, 3]
    assert (await comm.receive_json_from())["type"] == "presence"
    await publish(EchoTopic("a"), LOG["a"][2])  # id 3 arrives live too (a late broadcast)
    await publish(EchoTopic("a"), said("a", "new"))
    assert (await comm.receive_json_from())["id"] == 4
    await comm.disconnect()


async def test_a_topic_that_refuses_the_user_is_refused_before_accept(app, alice):
    comm = ws("/ws/echo/closed/", cookie=await session_cookie(alice), app=app)
    connected, code = await comm.connect()
    assert not connected
    assert await settled(alice) == NOTHING


async def test_a_frame_handler_that_fails_closes_1011_and_releases_everything(app, alice):
    comm = await open_echo(app, alice)
    await comm.receive_json_from()
    await comm.receive_json_from()
    assert held_by(alice)["slots"] == 1
    await comm.send_json_to({"type": "crash"})
    assert await comm.receive_output(timeout=1) == {"type": "websocket.close", "code": 1011}
    assert await settled(alice) == NOTHING
    assert not [
        c for c in process.shutdown.closers if isinstance(getattr(c, "__self__", None), connection.Connection)
    ]


async def test_a_database_error_in_a_frame_handler_sends_unavailable_then_closes_1011(app, alice):
    comm = await open_echo(app, alice)
    await comm.receive_json_from()
    await comm.receive_json_from()
    before = metrics_sample("realtime_database_unavailable_total", transport="websocket")
    await comm.send_json_to({"type": "store"})
    assert (await comm.receive_json_from())["code"] == "unavailable"
    assert await comm.receive_output(timeout=1) == {"type": "websocket.close", "code": 1011}
    assert metrics_sample("realtime_database_unavailable_total", transport="websocket") == before + 1
    assert await settled(alice) == NOTHING


async def test_a_topic_that_fails_while_opening_closes_1011_and_releases_everything(app, alice):
    comm = ws("/ws/echo/broken/", cookie=await session_cookie(alice), app=app)
    await comm.connect()
    assert await comm.receive_output(timeout=1) == {"type": "websocket.close", "code": 1011}
    assert await settled(alice) == NOTHING


async def test_a_client_gone_before_hello_releases_everything(app, alice):
    """The server's send raises once the client is gone (uvicorn: ClientDisconnected)."""

    async def gone_after_accept(scope, receive, send):
        async def send_or_fail(message):
            if message["type"] == "websocket.send":
                raise OSError("the client closed the TCP connection")
            await send(message)

        await app(scope, receive, send_or_fail)

    comm = ws("/ws/echo/a/", cookie=await session_cookie(alice), app=gone_after_accept)
    await comm.connect()
    await comm.wait(timeout=1)
    assert await settled(alice) == NOTHING


async def test_a_cancelled_connection_releases_everything(app, alice):
    comm = await open_echo(app, alice)
    await comm.receive_json_from()
    await comm.receive_json_from()
    comm.future.cancel()  # the server cancels the socket's task (shutdown, a server bug)
    with pytest.raises(asyncio.CancelledError):
        await comm.future
    assert await settled(alice) == NOTHING


async def test_twenty_five_failures_leave_the_user_free_to_connect(app, alice):
    """20 leaked slots would lock the user out of every socket and stream."""
    for _ in range(25):
        comm = ws("/ws/echo/broken/", cookie=await session_cookie(alice), app=app)
        await comm.connect()
        assert (await comm.receive_output(timeout=1))["code"] == 1011
        await comm.disconnect()
    comm = await open_echo(app, alice)
    assert (await comm.receive_json_from())["type"] == "hello"
    await comm.disconnect()


@override_settings(ROOT_URLCONF="tests.realtime.echo_urls")
async def test_an_sse_request_cut_before_its_stream_started_is_released(app, alice):
    """Django drops the response of a cut request without closing it; the ASGI wrapper gives its slot back."""
    cookie = await session_cookie(alice)
    sent: list[dict] = []
    disconnect = asyncio.Event()
    body = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if body:
            return body.pop()
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = http_scope("/sse/echo/a/", headers=[(b"cookie", cookie.encode())])
    real_admit = connection.Connection.admit

    async def admit_then_cut(self):
        reason = await real_admit(self)
        disconnect.set()  # the client goes away right after the view took the slot
        await asyncio.sleep(0.05)  # ... while the response travels back through the middleware
        return reason

    connection.Connection.admit = admit_then_cut
    try:
        await app(scope, receive, send)
    finally:
        connection.Connection.admit = real_admit
    assert not [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert await settled(alice) == NOTHING


@override_settings(ROOT_URLCONF="tests.realtime.echo_urls")
async def test_the_sse_view_streams_the_same_events_with_their_ids(app, alice):
    said("a", "before")
    async with sse_stream(
        "/sse/echo/a/", cookie=await session_cookie(alice), app=app, **{"Last-Event-ID": "0"}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        hello = await stream.next_event()
        assert (hello.event, hello.data["echo"], hello.id) == ("hello", "a", None)
        replayed = await stream.next_event()
        assert (replayed.event, replayed.id, replayed.data) == (
            "said",
            "1",
            {"type": "said", "id": 1, "text": "before"},
        )
        assert (await stream.next_event()).data == {"type": "presence", "users": ["alice"]}
        await publish(EchoTopic("a"), said("a", "live"))
        assert (await stream.next_event()).id == "2"
    assert await settled(alice) == NOTHING


async def test_memberships_older_than_group_expiry_are_renewed(app, alice, settings):
    layer = get_channel_layer()
    layer.group_expiry = 1  # the in-process layer forgets members this old
    try:
        comm = await open_echo(app, alice)
        await comm.receive_json_from()
        await comm.receive_json_from()
        await asyncio.sleep(2.5)  # past the expiry; the renewer re-adds every 0.5 s
        await publish(EchoTopic("a"), said("a", "still here"))
        assert (await comm.receive_json_from(timeout=2))["text"] == "still here"
        await comm.disconnect()
    finally:
        layer.group_expiry = 86400


async def test_background_jobs_start_with_the_first_request_and_stop_on_sigterm(app):
    ticks = []

    async def job():
        while True:
            ticks.append(1)
            await asyncio.sleep(0.01)

    background.register("test-job", job)
    try:
        async with http(app=app) as client:
            await client.get("/healthz")
        await asyncio.sleep(0.1)
        assert "test-job" in background.running() and ticks
        await background.stop()
        count = len(ticks)
        await asyncio.sleep(0.05)
        assert len(ticks) == count
    finally:
        background._jobs.pop("test-job", None)


class ReceiveFailsWhenCancelled:
    """The channel layer, but for a receive that ends with an error when cancelled (a read cut mid-way)."""

    def __init__(self, layer) -> None:
        self.layer = layer

    def __getattr__(self, name: str):
        return getattr(self.layer, name)

    async def receive(self, channel: str) -> dict:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("the read was cut") from None
        raise AssertionError("never woken")


@override_settings(REALTIME_SSE_KEEPALIVE=0.01)
async def test_a_cut_stream_leaves_no_unretrieved_exception_of_its_receive(alice):
    """The stream cancels its pending receive when its client resets; nobody looked at how that ended."""
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        layer = ReceiveFailsWhenCancelled(get_channel_layer())
        stream = EventStream(layer, await layer.new_channel())
        live = connection.Connection(
            topic=EchoTopic("a"),
            user=alice,
            credential=Credential(user_id=alice.pk),
            transport=stream,
            layer=layer,
            channel=stream.channel,
        )
        driver = asyncio.ensure_future(live.run(None))
        driver.add_done_callback(stream.driver_ended)
        assert await stream.decided is None
        body = stream.body(driver)
        # Suspended at a keep-alive's yield (a slow client), its receive pending ...
        while await anext(body) != ": keep-alive\n\n":
            pass
        await body.aclose()  # ... when the client resets and the response is cut.
        for _ in range(5):
            await asyncio.sleep(0)  # the cancelled receive ends, with its error
        del body, stream, driver, live
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert not reported, [context["message"] for context in reported]
    assert await settled(alice) == NOTHING
