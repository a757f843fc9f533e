"""Migrations: a database of the previous layout (rooms, messages and uploads in the core) migrates
intact, and no model has a change its migrations lack, on any Django the template runs on."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.models import Message, Room
from uploads.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)

# Where the previous layout's migrations ended: the core owned Room, Message and Upload.
PREVIOUS = [("realtime", "0003_upload"), ("chat", None), ("uploads", None)]


def migrate(targets) -> MigrationExecutor:
    """Migrate the test database to ``targets``; return the executor (its loader knows the states)."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_a_database_of_the_previous_layout_migrates_with_its_data_intact():
    executor = migrate(PREVIOUS)
    try:
        old = executor.loader.project_state(PREVIOUS[0]).apps
        user = old.get_model("auth", "User").objects.create(username="alice")
        room = old.get_model("realtime", "Room").objects.create(slug="general", name="General")
        upload_id = uuid.uuid4()
        upload = old.get_model("realtime", "Upload").objects.create(
            id=upload_id,
            user=user,
            room="general",
            filename="cat.png",
            size=3,
            offset=3,
            stored_name="x/cat.png",
        )
        old_message = old.get_model("realtime", "Message")
        first = old_message.objects.create(room=room, user=user, text="hello")
        second = old_message.objects.create(room=room, user=user, text="cat.png", attachment=upload)
        # The previous layout's content types (permissions and admin history hang on them).
        ContentType.objects.get_or_create(app_label="realtime", model="message")
        message_type = ContentType.objects.get(app_label="realtime", model="message").pk
    finally:
        migrate(latest())

    assert Room.objects.get(slug="general").name == "General"
    assert list(Message.objects.order_by("id").values_list("id", "text")) == [
        (first.pk, "hello"),
        (second.pk, "cat.png"),
    ]
    moved = Message.objects.select_related("attachment").get(pk=second.pk)
    assert (moved.attachment.pk, moved.attachment.filename) == (upload_id, "cat.png")
    assert Upload.objects.get(pk=upload_id).message == moved
    assert ContentType.objects.get(pk=message_type).app_label == "chat"
    # New rows keep counting from the old ids: the tables are the same tables.
    assert Message.objects.create(room=moved.room, user=moved.user, text="after").pk > second.pk


def test_no_model_has_a_change_its_migrations_lack():
    # A Django that writes fields differently would show here. (The apps pin BigAutoField, so
    # Django 6.0's new DEFAULT_AUTO_FIELD default changes nothing.)
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
