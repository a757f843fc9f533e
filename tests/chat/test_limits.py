"""The chat's limits under concurrency, and batches of posts that isolate a bad row.

Posts and room sockets against the rate limit and the per-user connection
cap, in one process over real Redis and across real server processes; a
bad row in a batch of messages fails alone.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import replace

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import OperationalError

from chat import service
from chat.models import Message, Room
from chat.topic import RoomTopic
from realtime import redis_store
from realtime.models import ApiToken
from tests.asgi import http, make_user
from tests.conftest import LIMITS_REDIS_URL, free_port, make_live_server
from tests.live_client import hello_or_refused
from tests.sse_client import login

REDIS_URL = LIMITS_REDIS_URL
CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/7"  # the two processes shared by several tests
SERVERS_REDIS_URL = "redis://127.0.0.1:6379/8"  # the processes of one test


async def token_client(user):
    """Return an in-process API client authenticated by a fresh bearer token of ``user``."""
    _, raw = await ApiToken.aissue(user)
    return http(authorization=f"Bearer {raw}")


async def post_wave(clients_and_rooms) -> list[int]:
    """Post one message per (client, room) at the same moment; return the status codes."""
    responses = await asyncio.gather(
        *(
            client.post(f"/api/rooms/{room}/messages", json={"text": "hi"})
            for client, room in clients_and_rooms
        )
    )
    return [r.status_code for r in responses]


@pytest.mark.django_db(transaction=True)
async def test_concurrent_posts_over_redis_never_pass_the_limit(shared):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        statuses = []
        for _ in range(3):  # three waves of 8 concurrent posts, well within the 10 s window
            statuses += await post_wave([(client, "general")] * 8)
    assert sorted(statuses) == [201] * 20 + [429] * 4
    assert await Message.objects.acount() == 20


@pytest.mark.django_db(transaction=True)
async def test_posts_to_many_other_rooms_do_not_reset_a_window(settings):
    # LocMemCache keeps 300 keys and culls a third past that: 320 other rooms used to
    # evict the first room's window, and the next 20 posts passed.
    settings.REALTIME_RATE_LIMIT = "20/60s"  # the eviction, not the clock, is under test
    alice = await make_user("alice")
    others = [f"other-{n}" for n in range(320)]
    await Room.objects.abulk_create([Room(slug=slug) for slug in ["first", *others]])
    async with await token_client(alice) as client:
        first = await post_wave([(client, "first")] * 20)
        spread = []
        for start in range(0, len(others), 40):
            spread += await post_wave([(client, room) for room in others[start : start + 40]])
        again = await post_wave([(client, "first")] * 20)
    assert first == [201] * 20
    assert spread == [201] * 320
    assert again == [429] * 20


async def test_typing_rate_keeps_its_own_setting(settings):
    settings.CHAT_TYPING_RATE = "2/1s"
    room = RoomTopic("general")
    user = type("U", (), {"pk": 7})()
    assert [await service.typing_allowed(user=user, topic=room) for _ in range(3)] == [True, True, False]


async def store_together(topic: RoomTopic, user, texts: list[str]) -> list[Message | BaseException]:
    """Store posts that arrive at the same moment (so in one batch); return each outcome."""
    return await asyncio.gather(
        *(service._store_and_publish(user=user, topic=topic, text=text) for text in texts),
        return_exceptions=True,
    )


@pytest.mark.django_db(transaction=True)
async def test_a_row_the_driver_cannot_encode_fails_alone(monkeypatch):
    alice = await make_user("alice")
    batches = []
    create = service._messages_create

    async def spy(**kwargs):
        batches.append(len(kwargs["posts"]))
        return await create(**kwargs)

    monkeypatch.setattr(service, "_messages_create", spy)
    # Validation refuses these (chat.service.clean_text); the store must hold even past it.
    texts = [f"good {n}" for n in range(4)] + ["bad \ud800"] + [f"good {n}" for n in range(4, 8)]
    outcomes = await store_together(RoomTopic("general"), alice, texts)
    assert batches[0] == len(texts), "the posts were stored as one batch"
    assert isinstance(outcomes[4], UnicodeEncodeError | ValueError)
    good = [o for n, o in enumerate(outcomes) if n != 4]
    assert all(isinstance(o, Message) for o in good)
    assert [m.text for m in good] == [f"good {n}" for n in range(8)]
    stored = [m async for m in Message.objects.order_by("id").values_list("text", flat=True)]
    assert stored == [f"good {n}" for n in range(8)]


@pytest.mark.django_db(transaction=True)
async def test_nul_fails_alone_where_the_database_refuses_it():
    alice = await make_user("alice")
    outcomes = await store_together(RoomTopic("general"), alice, ["one", "nul \x00", "two"])
    assert isinstance(outcomes[0], Message) and isinstance(outcomes[2], Message)
    # SQLite stores NUL; PostgreSQL refuses it (DataError): either way the others are stored.
    texts = {m async for m in Message.objects.values_list("text", flat=True)}
    assert {"one", "two"} <= texts


@pytest.mark.django_db(transaction=True)
async def test_a_connection_error_still_fails_the_whole_batch(monkeypatch):
    alice = await make_user("alice")

    def broken(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Message.objects, "bulk_create", broken)
    monkeypatch.setattr(Message.objects, "create", broken)
    outcomes = await store_together(RoomTopic("general"), alice, ["one", "two", "three"])
    assert all(isinstance(o, OperationalError) for o in outcomes)
    assert await Message.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_connection_lost_midway_fails_only_the_rows_not_stored(monkeypatch):
    alice = await make_user("alice")
    real_create = Message.objects.create
    calls = []

    def bulk(*args, **kwargs):
        raise ValueError("one bad row")

    def create(**kwargs):
        calls.append(kwargs["text"])
        if len(calls) == 3:
            raise OperationalError("server closed the connection unexpectedly")
        return real_create(**kwargs)

    monkeypatch.setattr(Message.objects, "bulk_create", bulk)
    monkeypatch.setattr(Message.objects, "create", create)
    outcomes = await store_together(RoomTopic("general"), alice, ["a", "b", "c", "d"])
    assert [type(o).__name__ for o in outcomes] == [
        "Message",
        "Message",
        "OperationalError",
        "OperationalError",
    ]
    assert calls == ["a", "b", "c"], "no row is tried on a lost connection"
    assert await sync_to_async(lambda: list(Message.objects.values_list("text", flat=True)))() == ["a", "b"]


# -- across real server processes ----------------------------------------------------------


def start_servers(tmp_path, redis_url: str, *, together: bool = False, **env: str):
    """Start two server processes sharing one database and one (flushed) Redis database."""
    try:
        redis.Redis.from_url(redis_url).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is needed and is not reachable: {exc}")
    a = make_live_server(tmp_path, REDIS_URL=redis_url, **env)
    port = free_port()
    b = replace(a, url=f"http://127.0.0.1:{port}", port=port, log_path=tmp_path / "b.log", process=None)
    return a, b


async def start_both(a, b) -> None:
    """Start both processes at the same moment."""
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))


def stop_servers(servers, redis_url: str) -> None:
    for server in servers:
        server.stop()
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two processes over Redis (REALTIME_PRESENCE_TTL=3), shared by the tests below."""
    a, b = start_servers(tmp_path_factory.mktemp("limits"), CLUSTER_REDIS_URL, REALTIME_PRESENCE_TTL="3")
    asyncio.run(start_both(a, b))
    yield a, b
    stop_servers((a, b), CLUSTER_REDIS_URL)


def csrf(client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


async def handshake(server, client, room: str):
    """Try a room socket on ``server``; return it once hello arrived, or None when refused."""
    return await hello_or_refused(server, client, f"/ws/rooms/{room}/")


@pytest.mark.slow
async def test_concurrent_posts_to_two_processes_never_pass_the_limit(cluster):
    a, b = cluster
    room = f"limits-{uuid.uuid4().hex[:8]}"
    async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:

        async def post(client):
            return (
                await client.post(f"/api/rooms/{room}/messages", json={"text": "hi"}, headers=csrf(client))
            ).status_code

        statuses = []
        for _ in range(3):  # three waves of 8 concurrent posts to each process
            statuses += await asyncio.gather(*(post(c) for c in [on_a] * 8 + [on_b] * 8))
        history = (await on_a.get(f"/api/rooms/{room}/messages")).json()["messages"]
    assert sorted(statuses) == [201] * 20 + [429] * 28
    assert len(history) == 20


@pytest.mark.slow
async def test_simultaneous_handshakes_on_two_processes_admit_exactly_the_limit(cluster):
    a, b = cluster
    room = f"limits-{uuid.uuid4().hex[:8]}"
    async with login(a.url, "bob") as on_a, login(b.url, "bob") as on_b:
        tries = [handshake(a, on_a, room) for _ in range(15)] + [handshake(b, on_b, room) for _ in range(15)]
        sockets = [ws for ws in await asyncio.gather(*tries) if ws is not None]
        assert len(sockets) == 20  # REALTIME_MAX_CONNECTIONS_PER_USER
        await asyncio.gather(*(ws.close() for ws in sockets))

        # Every slot comes back once the sockets are gone (releases are asynchronous).
        slots = redis.Redis.from_url(CLUSTER_REDIS_URL)
        async with asyncio.timeout(10):
            while any(slots.hvals(key) for key in slots.scan_iter("realtime:slots:*")):
                await asyncio.sleep(0.05)
        tries = [handshake(a, on_a, room) for _ in range(15)] + [handshake(b, on_b, room) for _ in range(15)]
        sockets = [ws for ws in await asyncio.gather(*tries) if ws is not None]
        assert len(sockets) == 20
        await asyncio.gather(*(ws.close() for ws in sockets))


@pytest.mark.slow
async def test_a_killed_processs_slots_come_back_within_the_ttl(tmp_path):
    a, b = start_servers(
        tmp_path, SERVERS_REDIS_URL, REALTIME_PRESENCE_TTL="2", REALTIME_MAX_CONNECTIONS_PER_USER="3"
    )
    await start_both(a, b)
    room = f"limits-{uuid.uuid4().hex[:8]}"
    try:
        async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:
            held = [await handshake(b, on_b, room) for _ in range(3)]
            assert all(held)
            assert await handshake(a, on_a, room) is None, "B holds every slot"
            b.process.send_signal(signal.SIGKILL)
            b.process.wait()
            async with asyncio.timeout(10):  # B's registry entry expires after 2 s
                while (ws := await handshake(a, on_a, room)) is None:
                    await asyncio.sleep(0.2)
            await ws.close()
    finally:
        stop_servers((a, b), SERVERS_REDIS_URL)


@pytest.mark.slow
async def test_processes_starting_together_both_list_each_others_users(tmp_path):
    # The default TTL: a process dropped from the registry would stay dropped for a heartbeat (10 s).
    a, b = start_servers(tmp_path, SERVERS_REDIS_URL)
    await start_both(a, b)
    room = f"limits-{uuid.uuid4().hex[:8]}"
    store = redis.Redis.from_url(SERVERS_REDIS_URL)
    try:
        async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
            # Each process registers on its first connection: both at the same moment.
            sockets = await asyncio.gather(handshake(a, alice, room), handshake(b, bob, room))

            async def presence_on(server, client):
                return (await client.get(f"{server.url}/api/rooms/{room}/presence")).json()["users"]

            async with asyncio.timeout(5):
                while store.zcard(redis_store.REGISTRY_KEY) < 2:
                    await asyncio.sleep(0.05)
            agreed = None
            for _ in range(30):  # 3 s: both stay listed, and both processes soon agree
                assert store.zcard(redis_store.REGISTRY_KEY) == 2
                views = (await presence_on(a, alice), await presence_on(b, bob))
                if views == (["alice", "bob"], ["alice", "bob"]):
                    agreed = agreed or views
                else:
                    assert agreed is None, f"presence fell apart after agreeing: {views}"
                await asyncio.sleep(0.1)
            assert agreed, "the processes never agreed on presence"
            await asyncio.gather(*(ws.close() for ws in sockets))
    finally:
        stop_servers((a, b), SERVERS_REDIS_URL)


@pytest.mark.slow
async def test_a_stopped_processs_slots_come_back_at_once(tmp_path):
    # The default TTL (30 s): a graceful stop gives its slots back itself, no expiry needed.
    a, b = start_servers(tmp_path, SERVERS_REDIS_URL, REALTIME_MAX_CONNECTIONS_PER_USER="3")
    await start_both(a, b)
    room = f"limits-{uuid.uuid4().hex[:8]}"
    try:
        async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:
            held = [await handshake(b, on_b, room) for _ in range(3)]
            assert all(held)
            assert await handshake(a, on_a, room) is None, "B holds every slot"
            await asyncio.to_thread(b.stop)  # SIGTERM: B closes its sockets with 1012 and exits
            ws = await handshake(a, on_a, room)
            assert ws is not None, "B's slots were given back when it stopped"
            await ws.close()
    finally:
        stop_servers((a, b), SERVERS_REDIS_URL)
