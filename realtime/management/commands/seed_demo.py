"""Demo users for a development server: what `make run` logs in with, and the pages to open."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.urls import NoReverseMatch, reverse

from realtime.navigation import declared_pages

DEMO_USERS = [
    # username, password, superuser
    ("alice", "alice", False),
    ("bob", "bob", False),
    ("admin", "admin", True),
]


class Command(BaseCommand):
    help = (
        "Create the demo users alice, bob and admin when DEBUG is on and they do not exist; "
        "print the address of every page the installed apps declare."
    )

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
        origin = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in at {origin}/accounts/login/ as alice/alice or bob/bob; "
                "the admin is at /admin/ as admin/admin."
            )
        )
        self.write_pages(origin)

    def write_pages(self, origin: str) -> None:
        """Print each installed app's page (AppConfig.realtime_pages): the Makefile names no app."""
        lines = []
        for label, url_name in declared_pages():
            try:
                lines.append(f"  {label}: {origin}{reverse(url_name)}")
            except NoReverseMatch:
                continue  # an app installed without its URLs: the header leaves it out too
        if lines:
            self.stdout.write("\n".join(["The apps' pages:", *lines]))
