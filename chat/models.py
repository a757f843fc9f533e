"""Rooms and their messages."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

SLUG_PATTERN = r"[a-z0-9-]{1,50}"
slug_validator = RegexValidator(rf"^{SLUG_PATTERN}\Z", "Use 1 to 50 of a-z, 0-9 and '-'.")


class Room(models.Model):
    """A chat room; a valid slug that does not exist yet reads as an empty room."""

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        # The table of the earlier layout, when rooms belonged to the core: data stays in place.
        db_table = "realtime_room"

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """Return the name shown to users: the name, else the slug title-cased."""
        return self.name or self.slug.replace("-", " ").title()


class Message(models.Model):
    """A chat message; ids increase strictly, so within a room too."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    # The finished upload this message carries (the uploads app), if any.
    attachment = models.OneToOneField(
        "uploads.Upload", null=True, blank=True, on_delete=models.SET_NULL, related_name="message"
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["room", "id"], name="realtime_me_room_id_6c7448_idx")]
        db_table = "realtime_message"

    def __str__(self) -> str:
        return f"#{self.pk} {self.text[:40]}"
