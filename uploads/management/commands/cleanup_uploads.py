from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from uploads import conf
from uploads.service import uploads_cleanup


class Command(BaseCommand):
    help = (
        "Delete abandoned uploads: unfinished ones untouched for --older-than hours, finished ones "
        "whose message is gone, and stray partial files. Run it from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=float,
            default=conf.expire_hours(),
            metavar="HOURS",
            help="age in hours since the last byte arrived (default UPLOADS_EXPIRE_HOURS, %(default)s)",
        )

    def handle(self, *args, older_than: float, **options):
        if older_than < 0:
            raise CommandError("--older-than must not be negative.")
        removed = uploads_cleanup(older_than=timedelta(hours=older_than))
        self.stdout.write(
            self.style.SUCCESS(
                f"Removed {removed['abandoned']} abandoned upload(s), {removed['orphaned']} "
                f"attachment(s) without a message and {removed['stray_files']} stray partial file(s)."
            )
        )
