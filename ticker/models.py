"""The ticker's state in the database: the latest snapshot, one row, so seq outlives a restart."""

from __future__ import annotations

from django.db import models


class Snapshot(models.Model):
    """The latest ``prices`` event (the wire contract, section 7), and its seq to advance it by."""

    seq = models.BigIntegerField()
    event = models.JSONField()

    def __str__(self) -> str:
        return f"ticker snapshot {self.seq}"
