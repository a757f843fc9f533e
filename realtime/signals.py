"""Model signals that become live events."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from . import events
from .models import Message


@receiver(post_delete, sender=Message)
def message_deleted(sender, instance: Message, **kwargs) -> None:
    """Called after any deletion of a message (admin, author, shell): tell the room."""
    # Read both now: Django sets instance.pk to None once the delete is done.
    slug, event = instance.room.slug, events.message_deleted(instance.pk)
    # Publish once the deletion is committed, so a client that refetches
    # history does not see the message again.
    transaction.on_commit(lambda: events.publish_sync(slug, event))
