"""Room and Message: their tables, created here on a new database, adopted on an old one.

An earlier layout kept these models in the core (``realtime`` 0001-0003
created ``realtime_room`` and ``realtime_message``). On such a database this
migration adopts the tables with their rows and moves the content types (so
permissions and admin history follow); on a new one it creates them. The
dependency on ``realtime`` 0003 orders it after those tables on an old
database; on a new one Django points it at the core's squashed migration.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import chat.models
from realtime.migration_ops import AdoptOrCreateModel, move_content_types


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("realtime", "0003_upload"),
        ("uploads", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AdoptOrCreateModel(
            name="Room",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "slug",
                    models.CharField(max_length=50, unique=True, validators=[chat.models.slug_validator]),
                ),
                ("name", models.CharField(blank=True, max_length=100)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["slug"], "db_table": "realtime_room"},
        ),
        AdoptOrCreateModel(
            name="Message",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("text", models.TextField()),
                ("created", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "room",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="messages", to="chat.room"
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "attachment",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="message",
                        to="uploads.upload",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "db_table": "realtime_message",
                "indexes": [models.Index(fields=["room", "id"], name="realtime_me_room_id_6c7448_idx")],
            },
        ),
        move_content_types("realtime", "chat", ["room", "message"]),
    ]
