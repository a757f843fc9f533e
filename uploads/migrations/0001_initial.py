"""Upload: its table, created here on a new database, adopted on an old one.

An earlier layout kept this model in the core (``realtime`` 0003 created
``realtime_upload``). On such a database this migration adopts the table
with its rows and moves the content type (so permissions and admin history
follow); on a new one it creates it. The dependency on ``realtime`` 0003
orders it after that table on an old database; on a new one Django points
it at the core's squashed migration.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import uploads.models
from realtime.migration_ops import AdoptOrCreateModel, move_content_types


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("realtime", "0003_upload"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AdoptOrCreateModel(
            name="Upload",
            fields=[
                (
                    "id",
                    models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False),
                ),
                ("room", models.CharField(max_length=50, validators=[uploads.models.target_validator])),
                (
                    "filename",
                    models.CharField(help_text="Display name, sanitised; never a path.", max_length=255),
                ),
                ("size", models.BigIntegerField(help_text="Upload-Length, in bytes.")),
                ("offset", models.BigIntegerField(default=0, help_text="Bytes received so far.")),
                ("stored_name", models.CharField(blank=True, editable=False, max_length=255)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True, db_index=True)),
                ("completed", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="uploads",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created"],
                "db_table": "realtime_upload",
                "indexes": [
                    models.Index(fields=["user", "completed"], name="realtime_up_user_id_ff1780_idx")
                ],
            },
        ),
        move_content_types("realtime", "uploads", ["upload"]),
    ]
