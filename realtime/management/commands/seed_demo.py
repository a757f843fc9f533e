"""Demo users for a development server: what `make run` logs in with."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = [
    # username, password, superuser
    ("alice", "alice", False),
    ("bob", "bob", False),
    ("admin", "admin", True),
]


class Command(BaseCommand):
    help = "Create the demo users alice, bob and admin when DEBUG is on and they do not exist."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo users created.")
            return
        User = get_user_model()
        for username, password, superuser in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            create = User.objects.create_superuser if superuser else User.objects.create_user
            create(username=username, password=password)
            self.stdout.write(f"Created demo user {username}.")
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in at http://127.0.0.1:{port}/accounts/login/ as alice/alice or bob/bob; "
                "the admin is at /admin/ as admin/admin."
            )
        )
