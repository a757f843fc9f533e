"""Personal API tokens: the bearer credential of scripts (realtime.auth)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models


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


class BusEvent(models.Model):
    """One published layer message on its way to the server processes (realtime.bus)."""

    # The id is the readers' cursor: rows are read in id order, from the last id seen.
    id = models.BigAutoField(primary_key=True)
    created = models.DateTimeField(db_index=True)  # retention deletes by age
    group = models.CharField(max_length=200)
    payload = models.TextField()  # the layer message, JSON

    class Meta:
        verbose_name = "bus event"
