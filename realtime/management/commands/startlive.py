"""``manage.py startlive <name>``: a new live feature, ready to wire (realtime.scaffold)."""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from realtime import scaffold


class Command(BaseCommand):
    help = (
        "Create <name>/ and tests/<name>/: a small live feature on the core's public API (a vote count "
        "over WebSocket, SSE and HTTP, its page and its tests), then print the two lines that wire it."
    )
    # Like startapp: a generator writes files and needs no passing checks. Django 6.1's checks
    # open the database (the JSONField check), which would create an empty db.sqlite3.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="the app's package name: lowercase letters, digits, underscores")
        parser.add_argument(
            "--directory",
            type=Path,
            default=None,
            help="the project's root to write into (default: BASE_DIR, the folder of manage.py)",
        )

    def handle(self, *args, name: str, directory: Path | None, **options):
        root = (directory or Path(settings.BASE_DIR)).resolve()
        try:
            written = scaffold.create(name, root)
        except ValidationError as exc:
            raise CommandError(f"Nothing written: {exc.message}") from None
        self.stdout.write(
            f"Created {name}/ and tests/{name}/ ({len(written)} files) in {root}.\n"
            "\n"
            "Wire it with two lines:\n"
            "  in project/settings.py, add to INSTALLED_APPS:\n"
            f'    "{name}",\n'
            "  in project/urls.py, add to urlpatterns, next to the other apps' include() lines:\n"
            f'    path("", include("{name}.urls")),\n'
            "\n"
            f"Then: python manage.py migrate; pytest tests/{name}; and open /{name}/ "
            f"(its API: /api/{name}; its live streams: /ws/{name}/ and /sse/{name}/)."
        )
