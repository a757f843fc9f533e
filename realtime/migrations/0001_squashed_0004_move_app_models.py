"""The core's tables on a new database: API tokens, and nothing of any app.

It replaces 0001-0004, which an earlier layout applied: they created tables
that apps own now (apps take them over in their own first migrations,
realtime.migration_ops.AdoptOrCreateModel). Django runs this one on a new
database and the replaced ones on a database that applied some of them;
they stay for those databases.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    replaces = [
        ("realtime", "0001_initial"),
        ("realtime", "0002_lobby_room"),
        ("realtime", "0003_upload"),
        ("realtime", "0004_move_app_models"),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(blank=True, max_length=100)),
                ("digest", models.CharField(editable=False, max_length=64, unique=True)),
                (
                    "prefix",
                    models.CharField(
                        editable=False, help_text="First characters, to tell tokens apart.", max_length=8
                    ),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("last_used", models.DateTimeField(blank=True, editable=False, null=True)),
                ("revoked", models.BooleanField(default=False)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "API token",
                "ordering": ["-created"],
            },
        ),
    ]
