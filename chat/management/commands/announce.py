from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from chat import events
from chat.topic import SLUG_RE, RoomTopic
from realtime import publish_sync, require_shared_layer


class Command(BaseCommand):
    help = "Send an announcement to every client in a room, from any process (through the bus)."

    def add_arguments(self, parser):
        parser.add_argument("room", help="room slug, e.g. lobby")
        parser.add_argument("text", help="the announcement")

    def handle(self, *args, room: str, text: str, **options):
        if not SLUG_RE.match(room):
            raise CommandError(f"{room!r} is not a room slug ([a-z0-9-]{{1,50}}).")
        if not text.strip():
            raise CommandError("The announcement text is empty.")
        try:
            require_shared_layer("manage.py announce")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        publish_sync(RoomTopic(room), events.announcement(text.strip()))
        self.stdout.write(self.style.SUCCESS(f"Announced to {room}."))
