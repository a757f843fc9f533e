"""The uploads' tests attach files in the chat's rooms: its room fixtures apply here too."""

from tests.chat.conftest import room, room_slug  # noqa: F401
