"""Databases made by earlier layouts (rooms, messages and uploads in the core) migrate intact; new ones
get the apps' tables from the apps' migrations and only API tokens from the core's; no model has a
change its migrations lack, on any Django the template runs on."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from chat.models import Message, Room
from realtime.models import ApiToken, hash_token
from uploads.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)

OURS = ["realtime", "chat", "uploads"]
# The core's migration that replaces the earlier layout's 0001-0004.
SQUASHED = ("realtime", "0001_squashed_0004_move_app_models")
# Where the first layout's migrations ended: the core owned Room, Message and Upload.
PREVIOUS = [("realtime", "0003_upload"), ("chat", None), ("uploads", None)]
# Where the second layout's ended: the apps had taken the models over, state only.
TAKEN_OVER = [("realtime", "0004_move_app_models"), ("chat", "0001_initial"), ("uploads", "0001_initial")]


def migrate(targets, *, replaced: bool = False) -> MigrationExecutor:
    """Migrate the test database to ``targets``; return the executor (its loader knows the states).

    ``replaced=True`` migrates along the migrations a squash replaces, as the
    earlier layouts did before the squash existed.
    """
    executor = MigrationExecutor(connection)
    if replaced:
        executor.loader.replace_migrations = False
        executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def unmigrate_ours() -> None:
    """Unapply the core's and the apps' migrations: their tables go."""
    migrate([(app, None) for app in OURS])
    assert not {t for t in tables() if t.startswith("realtime_")}


def fill_previous_layout(executor: MigrationExecutor) -> dict:
    """Store a user, a token, a room, two messages (one with an attachment) in the first layout's models."""
    old = executor.loader.project_state(PREVIOUS[0]).apps
    user = old.get_model("auth", "User").objects.create(username="alice")
    token = old.get_model("realtime", "ApiToken").objects.create(
        user=user, name="script", digest=hash_token("raw-token"), prefix="raw-toke"
    )
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
    saved = {"first": first.pk, "second": second.pk, "upload": upload_id, "token": token.pk}
    return {**saved, "type": message_type}


def assert_intact(saved: dict) -> None:
    assert Room.objects.get(slug="general").name == "General"
    assert Room.objects.filter(slug="lobby").exists()
    assert list(Message.objects.order_by("id").values_list("id", "text")) == [
        (saved["first"], "hello"),
        (saved["second"], "cat.png"),
    ]
    moved = Message.objects.select_related("attachment").get(pk=saved["second"])
    assert (moved.attachment.pk, moved.attachment.filename) == (saved["upload"], "cat.png")
    assert Upload.objects.get(pk=saved["upload"]).message == moved
    assert ApiToken.objects.get(pk=saved["token"]).digest == hash_token("raw-token")
    assert ContentType.objects.get(pk=saved["type"]).app_label == "chat"
    # New rows keep counting from the old ids: the tables are the same tables.
    assert Message.objects.create(room=moved.room, user=moved.user, text="after").pk > saved["second"]


def test_a_database_of_the_previous_layout_migrates_with_its_data_intact():
    try:
        unmigrate_ours()
        executor = migrate(PREVIOUS, replaced=True)
        saved = fill_previous_layout(executor)
    finally:
        migrate(latest())

    assert_intact(saved)
    # Every replaced migration is applied now, so the squash counts as applied too.
    assert SQUASHED in MigrationRecorder(connection).applied_migrations()


def test_a_database_whose_apps_had_taken_the_models_over_migrates_with_its_data_intact():
    try:
        unmigrate_ours()
        saved = fill_previous_layout(migrate(PREVIOUS, replaced=True))
        migrate(TAKEN_OVER, replaced=True)
        assert not MigrationExecutor(connection).migration_plan(TAKEN_OVER)
    finally:
        migrate(latest())

    assert_intact(saved)
    assert SQUASHED in MigrationRecorder(connection).applied_migrations()


def test_a_new_database_gets_only_api_tokens_from_the_core_and_the_rest_from_the_apps():
    try:
        unmigrate_ours()
        migrate([SQUASHED])
        assert {t for t in tables() if t.startswith("realtime_")} == {"realtime_apitoken"}
        applied = MigrationRecorder(connection).applied_migrations()
        assert SQUASHED in applied and ("realtime", "0001_initial") in applied
    finally:
        migrate(latest())

    assert {"realtime_room", "realtime_message", "realtime_upload"} <= tables()
    assert Room.objects.filter(slug="lobby").exists()
    assert not MigrationExecutor(connection).migration_plan(latest())


def test_no_model_has_a_change_its_migrations_lack():
    # A Django that writes fields differently would show here. (The apps pin BigAutoField, so
    # Django 6.0's new DEFAULT_AUTO_FIELD default changes nothing.)
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
