"""Resumable uploads (tus 1.0); each finished one becomes an attachment of the topic it names."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse

# The key of the topic an upload is posted to (``room`` in Upload-Metadata): a room slug.
TARGET_PATTERN = r"[a-z0-9-]{1,50}"
target_validator = RegexValidator(rf"^{TARGET_PATTERN}\Z", "Use 1 to 50 of a-z, 0-9 and '-'.")


class Upload(models.Model):
    """A resumable upload; once complete, the attachment of a message in its room.

    The bytes live in a partial file under ``UPLOADS_TEMP_DIR`` while
    the upload runs, then in the upload storage under ``stored_name``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    room = models.CharField(max_length=50, validators=[target_validator])
    filename = models.CharField(max_length=255, help_text="Display name, sanitised; never a path.")
    size = models.BigIntegerField(help_text="Upload-Length, in bytes.")
    offset = models.BigIntegerField(default=0, help_text="Bytes received so far.")
    stored_name = models.CharField(max_length=255, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)
    completed = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "completed"], name="realtime_up_user_id_ff1780_idx")]
        # The table of the earlier layout, when uploads belonged to the core: data stays in place.
        db_table = "realtime_upload"

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


@receiver(post_delete, sender=Upload, dispatch_uid="uploads.upload_deleted")
def upload_deleted(sender, instance: Upload, **kwargs) -> None:
    """Called after any deletion of an upload (termination, cleanup, admin, cascade): drop its bytes."""
    from .files import discard_files

    # Read both now: Django sets instance.pk to None once the delete is done.
    public_id, stored_name = instance.public_id, instance.stored_name
    transaction.on_commit(lambda: discard_files(public_id, stored_name))
