"""Room, Message and Upload now belong to the apps ``chat`` and ``uploads``: forget them here.

State only: the tables stay, and the apps' first migrations take the models
over. The core keeps ApiToken.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("realtime", "0003_upload"),
        ("chat", "0001_initial"),
        ("uploads", "0001_initial"),
    ]

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
