"""Signals that become live room events: deletions, and finished uploads posted as messages."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from realtime import publish_sync
from uploads.models import Upload
from uploads.signals import upload_creating, upload_finished

from . import events, service
from .models import Message
from .topic import RoomTopic


@receiver(post_delete, sender=Message, dispatch_uid="chat.message_deleted")
def message_deleted(sender, instance: Message, **kwargs) -> None:
    """Called after any deletion of a message (admin, author, shell): tell the room."""
    # Read both now: Django sets instance.pk to None once the delete is done.
    topic, event = RoomTopic(instance.room.slug), events.message_deleted(instance.pk)
    # Publish once the deletion is committed, so a client that refetches
    # history does not see the message again.
    transaction.on_commit(lambda: publish_sync(topic, event))


@receiver(post_delete, sender=Message, dispatch_uid="chat.attachment_message_deleted")
def attachment_message_deleted(sender, instance: Message, **kwargs) -> None:
    """Called after any deletion of a message: its attachment goes with it."""
    if instance.attachment_id is not None:
        Upload.objects.filter(pk=instance.attachment_id).delete()


@receiver(upload_creating, dispatch_uid="chat.room_creation_limit")
async def count_room_creation(sender, user, target: str, **kwargs) -> None:
    """Called before an upload is created: one to a new room creates it, within the hourly limit."""
    await service.require_room_creation_allowed(user=user, slug=target)


@receiver(upload_finished, dispatch_uid="chat.post_attachment")
async def post_attachment(sender, upload: Upload, user, **kwargs) -> None:
    """Called when an upload is complete: post it to its room as a message with an attachment."""
    await service.attachment_post(user=user, topic=RoomTopic(upload.room), upload=upload)
