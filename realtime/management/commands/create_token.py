from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from realtime.models import ApiToken


class Command(BaseCommand):
    help = "Issue a personal API token for a user and print it (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label shown in the admin")

    def handle(self, *args, username: str, name: str, **options):
        try:
            user = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        _, raw = ApiToken.issue(user, name=name)
        self.stdout.write(raw)
