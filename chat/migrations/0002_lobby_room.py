"""The lobby room, as every database had it (the core's 0002 made it before the chat had migrations)."""

from django.db import migrations


def create_lobby(apps, schema_editor):
    apps.get_model("chat", "Room").objects.get_or_create(slug="lobby", defaults={"name": "Lobby"})


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]
    operations = [migrations.RunPython(create_lobby, migrations.RunPython.noop)]
