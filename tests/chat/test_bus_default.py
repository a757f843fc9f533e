"""The default setup (one server, no Redis): any other process publishes through the event table.

``manage.py announce``, ``manage.py shell`` and credential changes made in
another process reach the server's sockets within 1 s (the wire contract
(docs/contract.md), section 9). Deadlines here are a few seconds, for a
loaded machine; bench/bus_latency.py measures the latency itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import free_port, make_live_server
from tests.live_client import joined, login, recv_event, ws_connect

pytestmark = pytest.mark.slow

# "Within 1 s", with room for a loaded machine (the time counted starts once the other process wrote).
DEADLINE = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server of the module's own on the default setup (the memory bus, no Redis)."""
    server = make_live_server(tmp_path_factory.mktemp("bus"), REDIS_URL="", REALTIME_BUS="")
    server.start()
    yield server
    server.stop()


def shell(server, code: str) -> float:
    """Run ``code`` in ``manage.py shell`` (another process); return the time.time() it printed last."""
    result = server.manage("shell", "-c", code)
    return float(result.stdout.strip().splitlines()[-1])


def announce_code(room: str, text: str, *, rollback: bool = False) -> str:
    """Return shell code that publishes an announcement (in a transaction rolled back, if asked)."""
    publish = f"publish_sync(RoomTopic({room!r}), announcement({text!r}))"
    body = (
        f"\ntry:\n    with transaction.atomic():\n        {publish}\n        raise ValueError\n"
        "except ValueError:\n    pass\n"
        if rollback
        else f"\n{publish}\n"
    )
    return (
        "import time\nfrom django.db import transaction\nfrom chat.events import announcement\n"
        "from chat.topic import RoomTopic\nfrom realtime import publish_sync\n"
        f"{body}print(time.time())\n"
    )


async def closed_with(ws) -> int:
    """Return the close code the server ends ``ws`` with (reading past any events)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), DEADLINE + 5)
    return closed.value.rcvd.code


async def test_announce_from_another_process_reaches_the_servers_sockets(server, room):
    async with login(server, "alice") as alice, ws_connect(server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        result = await asyncio.to_thread(server.manage, "announce", room, "hello all")
        done = time.time()

        assert result.returncode == 0, result.stderr
        assert await recv_event(ws, timeout=DEADLINE) == {"type": "announcement", "text": "hello all"}
        assert time.time() - done < DEADLINE


async def test_publish_from_a_shell_reaches_the_servers_sockets_within_a_second(server, room):
    async with login(server, "alice") as alice, ws_connect(server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        published_at = await asyncio.to_thread(shell, server, announce_code(room, "from a shell"))

        assert await recv_event(ws, timeout=DEADLINE) == {"type": "announcement", "text": "from a shell"}
        assert time.time() - published_at < DEADLINE


async def test_an_async_publish_from_a_workers_event_loop_reaches_the_servers_sockets(server, room):
    code = (
        "import asyncio, time\nfrom chat.events import announcement\nfrom chat.topic import RoomTopic\n"
        "from realtime import publish\n"
        f"asyncio.run(publish(RoomTopic({room!r}), announcement('from a worker')))\n"
        "print(time.time())\n"
    )
    async with login(server, "alice") as alice, ws_connect(server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        published_at = await asyncio.to_thread(shell, server, code)

        assert await recv_event(ws, timeout=DEADLINE) == {"type": "announcement", "text": "from a worker"}
        assert time.time() - published_at < DEADLINE


async def test_a_publish_in_a_rolled_back_transaction_is_never_delivered(server, room):
    async with login(server, "alice") as alice, ws_connect(server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        await asyncio.to_thread(shell, server, announce_code(room, "rolled back", rollback=True))
        await asyncio.to_thread(shell, server, announce_code(room, "committed"))

        # The table is read in id order: had the first one been stored, it would come first.
        assert await recv_event(ws, timeout=DEADLINE) == {"type": "announcement", "text": "committed"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("u.is_active = False; u.save()", 4403),
        ("u.set_password('another-password-1'); u.save()", 4401),
    ],
    ids=["deactivated", "password-changed"],
)
async def test_a_user_changed_in_another_process_loses_their_sockets(server, room, change, code):
    username = f"u{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(server.create_user, username)
    async with login(server, username) as client, ws_connect(server, client, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        changed_at = await asyncio.to_thread(
            shell,
            server,
            "import time\nfrom django.contrib.auth import get_user_model\n"
            f"u = get_user_model().objects.get(username={username!r})\n{change}\nprint(time.time())\n",
        )

        assert await closed_with(ws) == code
        assert time.time() - changed_at < DEADLINE


async def test_a_session_deleted_in_another_process_closes_its_sockets(server, room):
    async with login(server, "bob") as bob, ws_connect(server, bob, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        deleted_at = await asyncio.to_thread(
            shell,
            server,
            "import time\nfrom realtime.sessions import SessionStore\n"
            f"SessionStore({bob.cookies['sessionid']!r}).delete()\nprint(time.time())\n",
        )

        assert await closed_with(ws) == 4401
        assert time.time() - deleted_at < DEADLINE


def test_a_second_server_on_the_same_database_refuses_to_start_until_the_first_stops(tmp_path):
    first = make_live_server(tmp_path, REDIS_URL="", REALTIME_BUS="")
    port = free_port()
    second = replace(first, url=f"http://127.0.0.1:{port}", port=port, log_path=tmp_path / "second.log")
    first.start()  # it served /healthz: its heartbeat is in the table
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            second.start()
        assert "Another server process" in second.log_path.read_text()
        assert "REALTIME_BUS=postgres" in second.log_path.read_text()
    finally:
        first.stop()
    second.start()  # the first one's heartbeats went with it: a restart is not refused
    second.stop()
