"""Rooms, their messages, and personal API tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse

SLUG_PATTERN = r"[a-z0-9-]{1,50}"
slug_validator = RegexValidator(rf"^{SLUG_PATTERN}\Z", "Use 1 to 50 of a-z, 0-9 and '-'.")


class Room(models.Model):
    """A chat room; a valid slug that does not exist yet reads as an empty room."""

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

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
    # The finished upload this message carries (realtime.uploads), if any.
    attachment = models.OneToOneField(
        "Upload", null=True, blank=True, on_delete=models.SET_NULL, related_name="message"
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["room", "id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.text[:40]}"


def hash_token(raw: str) -> str:
    """Return the digest stored for a raw token (tokens are random, so no salt is needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal API token; only its SHA-256 digest is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=8, editable=False, help_text="First characters, to tell tokens apart."
    )
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for ``user``; return it with the raw value, shown only once."""
        raw = secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, digest=hash_token(raw), prefix=raw[:8])
        return token, raw

    @classmethod
    async def aissue(cls, user, name: str = "") -> tuple[ApiToken, str]:
        """Async :meth:`issue`."""
        raw = secrets.token_urlsafe(32)
        token = await cls.objects.acreate(user=user, name=name, digest=hash_token(raw), prefix=raw[:8])
        return token, raw


class Upload(models.Model):
    """A resumable upload (tus 1.0, realtime.uploads); once complete, a message's attachment.

    The bytes live in a partial file under ``REALTIME_UPLOAD_TEMP_DIR`` while
    the upload runs, then in the upload storage under ``stored_name``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    room = models.CharField(max_length=50, validators=[slug_validator])
    filename = models.CharField(max_length=255, help_text="Display name, sanitised; never a path.")
    size = models.BigIntegerField(help_text="Upload-Length, in bytes.")
    offset = models.BigIntegerField(default=0, help_text="Bytes received so far.")
    stored_name = models.CharField(max_length=255, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)
    completed = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "completed"])]

    def __str__(self) -> str:
        return f"{self.filename} ({self.offset}/{self.size})"

    @property
    def public_id(self) -> str:
        """Return the id as it appears in URLs and events (32 hex digits)."""
        return self.id.hex

    @property
    def file_url(self) -> str:
        """Return the URL that serves the finished file to the room's readers."""
        return reverse("api-upload-file", kwargs={"upload_id": self.public_id})


@receiver(post_delete, sender=Upload, dispatch_uid="realtime.upload_deleted")
def upload_deleted(sender, instance: Upload, **kwargs) -> None:
    """Called after any deletion of an upload (termination, cleanup, admin, cascade): drop its bytes."""
    from .uploads.files import discard_files

    # Read both now: Django sets instance.pk to None once the delete is done.
    public_id, stored_name = instance.public_id, instance.stored_name
    transaction.on_commit(lambda: discard_files(public_id, stored_name))


@receiver(post_delete, sender=Message, dispatch_uid="realtime.attachment_message_deleted")
def attachment_message_deleted(sender, instance: Message, **kwargs) -> None:
    """Called after any deletion of a message: its attachment goes with it."""
    if instance.attachment_id is not None:
        Upload.objects.filter(pk=instance.attachment_id).delete()
