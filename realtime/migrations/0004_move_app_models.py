"""Replaced by 0001_squashed_0004: forget the models apps took over (state only, the tables stay).

Kept for a database that applied 0001-0003 and not this one. It names no
app: the apps that adopt these tables order themselves after 0003
(realtime.migration_ops.AdoptOrCreateModel), so the core migrates without
them.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("realtime", "0003_upload")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="message", name="attachment"),
                migrations.DeleteModel(name="Message"),
                migrations.DeleteModel(name="Room"),
                migrations.DeleteModel(name="Upload"),
            ],
            database_operations=[],
        ),
    ]
