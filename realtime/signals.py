"""Auth and token signals that become connection notices: a credential that ends ends its connections.

A notice is sent once the change commits, and not at all if it rolls back
(realtime.events.notify_sync), from whichever process made the change.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from . import events
from .codes import SESSION_ENDED, USER_DEACTIVATED
from .models import ApiToken

User = get_user_model()


@receiver(user_logged_out)
def session_logged_out(sender, request, user, **kwargs) -> None:
    """Called on logout, before the session is flushed: end that session's connections."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        events.notify_sync(events.session_group(key), events.CLOSE, code=SESSION_ENDED)


@receiver(pre_save, sender=User)
def remember_credentials(sender, instance, update_fields=None, **kwargs) -> None:
    """Called before a user is saved: note the password and active flag it had."""
    if instance.pk is None or (update_fields and not {"password", "is_active"} & set(update_fields)):
        instance._realtime_before = None
        return
    instance._realtime_before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()


@receiver(post_save, sender=User)
def credentials_changed(sender, instance, created: bool, **kwargs) -> None:
    """Called after any save of a user: deactivation and password changes end connections."""
    before = getattr(instance, "_realtime_before", None)
    if created or before is None:
        return
    group = events.user_group(instance.pk)
    if not instance.is_active:
        events.notify_sync(group, events.CLOSE, code=USER_DEACTIVATED)
    elif before["password"] != instance.password:
        events.notify_sync(group, events.REVALIDATE)


@receiver(post_delete, sender=User)
def user_deleted(sender, instance, **kwargs) -> None:
    """Called after a user is deleted: end every connection they had."""
    group = events.user_group(instance.pk)
    events.notify_sync(group, events.CLOSE, code=SESSION_ENDED)


@receiver(post_save, sender=ApiToken)
@receiver(post_delete, sender=ApiToken)
def token_revoked(sender, instance: ApiToken, **kwargs) -> None:
    """Called after a token is saved or deleted: a revoked or deleted token ends its connections."""
    if kwargs.get("signal") is post_save and not instance.revoked:
        return
    group = events.token_group(instance.pk)
    events.notify_sync(group, events.CLOSE, code=SESSION_ENDED)
