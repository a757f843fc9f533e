"""The admin: its changes reach the rooms live."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from chat.models import Message, Room
from realtime.models import ApiToken
from tests.asgi import joined, make_user, ws

pytestmark = pytest.mark.django_db(transaction=True)


async def admin_client() -> Client:
    """Return a test client logged in as a superuser."""
    admin = await sync_to_async(get_user_model().objects.create_superuser)("root", password="root")
    client = Client()
    await sync_to_async(client.force_login)(admin)
    return client


async def post(client: Client, path: str, data: dict):
    """POST through the admin off the event loop (the admin is synchronous)."""
    return await sync_to_async(client.post)(path, data)


async def test_deleting_a_message_in_the_admin_tells_the_room():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    msg = await Message.objects.acreate(room=room, user=alice, text="oops")
    client = await admin_client()
    async with joined("/ws/rooms/general/", user=alice) as a:
        response = await post(client, f"/admin/realtime/message/{msg.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        assert await a.receive_json_from() == {"type": "message_deleted", "id": msg.pk}
    assert not await Message.objects.filter(pk=msg.pk).aexists()


async def test_bulk_delete_action_tells_the_room_about_each_message():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    msgs = [await Message.objects.acreate(room=room, user=alice, text=f"m{n}") for n in range(3)]
    client = await admin_client()
    async with joined("/ws/rooms/general/", user=alice) as a:
        await post(
            client,
            "/admin/realtime/message/",
            {"action": "delete_selected", "_selected_action": [m.pk for m in msgs], "post": "yes"},
        )
        deleted = {(await a.receive_json_from())["id"] for _ in msgs}
    assert deleted == {m.pk for m in msgs}


async def test_room_admin_action_sends_an_announcement():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    client = await admin_client()
    data = {"action": "send_announcement", "_selected_action": [room.pk]}
    form_page = await post(client, "/admin/realtime/room/", data)
    assert form_page.status_code == 200 and b"Send announcement" in form_page.content
    async with joined("/ws/rooms/general/", user=alice) as a:
        response = await post(client, "/admin/realtime/room/", {**data, "text": "Maintenance at noon"})
        assert response.status_code == 302
        assert await a.receive_json_from() == {"type": "announcement", "text": "Maintenance at noon"}


async def test_revoking_a_token_in_the_admin_stops_it_authenticating():
    alice = await make_user("alice")
    token, raw = await ApiToken.aissue(alice)
    client = await admin_client()
    await post(client, "/admin/realtime/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    await token.arefresh_from_db()
    assert token.revoked
    comm = ws(f"/ws/rooms/general/?access_token={raw}")
    assert not (await comm.connect())[0]


async def test_admin_lists_rooms_messages_and_tokens_with_search():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    await Message.objects.acreate(room=room, user=alice, text="findme")
    await ApiToken.aissue(alice)
    client = await admin_client()
    get = sync_to_async(client.get)
    for path in ("/admin/realtime/room/", "/admin/realtime/apitoken/", "/admin/realtime/message/?q=findme"):
        assert (await get(path)).status_code == 200
    assert b"findme" in (await get("/admin/realtime/message/?q=findme")).content
