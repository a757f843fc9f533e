from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from realtime import events
from realtime.chat import SLUG_RE
from realtime.services import require_redis


class Command(BaseCommand):
    help = "Send an announcement to every client in a room (needs REDIS_URL)."

    def add_arguments(self, parser):
        parser.add_argument("room", help="room slug, e.g. lobby")
        parser.add_argument("text", help="the announcement")

    def handle(self, *args, room: str, text: str, **options):
        if not SLUG_RE.match(room):
            raise CommandError(f"{room!r} is not a room slug ([a-z0-9-]{{1,50}}).")
        if not text.strip():
            raise CommandError("The announcement text is empty.")
        if events.layer_is_process_local():
            # The in-process layer lives inside the server: a send from this
            # process would reach nobody, so say so instead of pretending.
            raise CommandError(
                "manage.py announce needs REDIS_URL: the in-process channel layer cannot "
                "reach the running server from another process."
            )
        try:
            require_redis()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        events.publish_sync(room, events.announcement(text.strip()))
        self.stdout.write(self.style.SUCCESS(f"Announced to {room}."))
