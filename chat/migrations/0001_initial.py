"""Room and Message move from the core (``realtime``) to this app; their tables stay as they are.

On a new database the core's earlier migrations create the tables; this
migration only takes the models over in Django's state, and moves their
content types (so permissions and admin history follow them).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import chat.models
from realtime.migration_ops import move_content_types

class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("realtime", "0003_upload"),
        ("uploads", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Room",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("slug", models.CharField(max_length=50, unique=True, validators=[chat.models.slug_validator])),
                        ("name", models.CharField(blank=True, max_length=100)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={"ordering": ["slug"], "db_table": "realtime_room"},
                ),
                migrations.CreateModel(
                    name="Message",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
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
                            models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL),
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
            ],
            database_operations=[],
        ),
        move_content_types("realtime", "chat", ["room", "message"]),
    ]
