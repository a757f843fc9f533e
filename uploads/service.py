"""Upload rules: who may create what, appending bytes, progress, completion, cleanup."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from realtime import (
    ClientError,
    Topic,
    db_call,
    publish_to_user,
    rate_allow,
    spawn,
    topic_for,
)

from . import conf, files, metrics
from .models import TARGET_PATTERN, Upload
from .protocol import UploadError, clean_filename
from .signals import upload_creating, upload_finished

logger = logging.getLogger(__name__)

# One PATCH at a time per upload in this process; a second one is told 423
# (tus clients retry it) rather than queued behind the first.
_locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()
# Tasks that must finish even if the request that started them is cancelled.
_shielded: set[asyncio.Task] = set()


TARGET_RE = re.compile(rf"{TARGET_PATTERN}\Z")


def target(room: str) -> Topic:
    """Return the topic an upload is posted to: who may upload there, and what it counts against."""
    return topic_for(conf.topic(), room)


def _not_found() -> ClientError:
    return ClientError("not_found", "No such upload.")


def _active_since():
    """Return the cut-off before which an incomplete upload counts as abandoned."""
    return timezone.now() - timedelta(hours=conf.expire_hours())


async def upload_create(*, user, length: int, metadata: dict[str, str]) -> Upload:
    """Create an upload of ``length`` bytes for ``metadata`` (``room``, ``filename``); return it."""
    if length > (limit := conf.max_size()):
        raise ClientError("too_large", f"Uploads are limited to {limit} bytes.")
    room = metadata.get("room")
    if not room:
        raise ClientError("invalid", "'Upload-Metadata' must carry 'room'.")
    if not TARGET_RE.match(room):
        raise ClientError("invalid", f"'room' must be a room slug ({TARGET_PATTERN}).")
    topic = target(room)
    if not topic.can_join(user):
        raise ClientError("forbidden", "You may not post to this room.")
    await upload_creating.asend(sender=Upload, user=user, target=room)
    limit = conf.max_active_per_user()
    # A first look without a lock, so a creation over the quota costs no rate-limit hit;
    # the count that decides is taken again below, atomically with the creation.
    if await _active_count(user=user) >= limit:
        raise _too_many_uploads(limit)
    # An upload becomes a message, so creating one counts against the message rate limit.
    if not await rate_allow(user_id=user.pk, key=topic.group):
        raise ClientError("rate_limited", f"Over {settings.REALTIME_RATE_LIMIT} messages in this room.")
    upload = await _create_within_quota(
        user=user, room=room, filename=clean_filename(metadata.get("filename", "")), size=length, limit=limit
    )
    if upload is None:
        raise _too_many_uploads(limit)
    await asyncio.to_thread(files.partial_create, upload)
    if length == 0:
        await _finish(user=user, upload=upload)
    return upload


def _active_uploads(user):
    """Return the user's unfinished uploads that count against the quota."""
    return Upload.objects.filter(user=user, completed__isnull=True, updated__gte=_active_since())


def _too_many_uploads(limit: int) -> UploadError:
    return UploadError(
        "too_many_uploads", f"At most {limit} unfinished uploads at a time; finish or delete one.", 429
    )


# The quota's database work runs on the realtime DB thread (db_call), so the
# request's thread holds no pooled connection meanwhile.


@db_call
def _active_count(*, user) -> int:
    """Return how many of ``user``'s uploads count against the quota."""
    return _active_uploads(user).count()


@db_call
def _create_within_quota(*, user, limit: int, **fields) -> Upload | None:
    """Create an upload of ``user`` unless ``limit`` are unfinished; return it, or None when over.

    Count and creation are one transaction that holds the user's lock, so
    concurrent creations (any thread, any process) are counted one after
    the other: PostgreSQL locks the user's row (``SELECT ... FOR UPDATE``);
    SQLite ignores that clause, but its ``IMMEDIATE`` transactions (see
    project/settings.py) take the database's write lock at ``BEGIN``.
    """
    with transaction.atomic():
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        if _active_uploads(user).count() >= limit:
            return None
        return Upload.objects.create(user=user, **fields)


async def upload_get(*, user, upload_id: str) -> Upload:
    """Return ``user``'s upload ``upload_id``; anyone else's is 404, as an unknown one."""
    try:
        pk = uuid.UUID(hex=upload_id)
    except ValueError:
        raise _not_found() from None
    upload = await Upload.objects.filter(pk=pk, user=user).afirst()
    if upload is None:
        raise _not_found()
    return upload


async def upload_append(
    *, user, upload: Upload, offset: int, read, length: int | None, checksum: bytes | None
) -> Upload:
    """Append a PATCH body (``read(n)`` returns its next bytes) at ``offset``; return the upload.

    The copy is shielded from the request's cancellation, so it keeps the
    upload's lock until it has committed or rolled back: no second PATCH
    can write the file meanwhile. (A client that goes away mid-copy makes
    Django close the body, and the copy rolls back.)
    """
    lock = _lock_of(upload)
    await lock.acquire()  # free, so this takes it without yielding to another request
    try:
        await upload.arefresh_from_db(fields=["offset", "completed", "stored_name"])
        if offset != upload.offset:
            raise UploadError("conflict", f"'Upload-Offset' must be {upload.offset}.", 409)
        remaining = upload.size - upload.offset
        if length is not None and length > remaining:
            raise ClientError("too_large", f"Only {remaining} more bytes fit in this upload.")
        if upload.completed is not None:  # an empty PATCH of a finished upload: nothing to do
            lock.release()
            return upload
        task = asyncio.create_task(_append(user, upload, read, remaining, checksum))
    except BaseException:
        lock.release()
        raise
    _shielded.add(task)

    def done(task: asyncio.Task) -> None:
        _shielded.discard(task)
        lock.release()
        if not task.cancelled():
            task.exception()  # mark retrieved: the request may have gone already

    task.add_done_callback(done)
    return await asyncio.shield(task)


def _lock_of(upload: Upload) -> asyncio.Lock:
    """Return the PATCH lock of an upload, or raise 423 while another request holds it."""
    lock = _locks.setdefault(upload.pk, asyncio.Lock())
    if lock.locked():
        raise UploadError("locked", "Another request is writing this upload; retry.", 423)
    return lock


async def _append(user, upload: Upload, read, remaining: int, checksum: bytes | None) -> Upload:
    """Copy the body into the partial file, commit the new offset, finish when complete."""
    start = upload.offset
    path = files.partial_path(upload.public_id)
    writer = await asyncio.to_thread(files.ChunkWriter, path, start, remaining)
    try:
        while await asyncio.to_thread(writer.copy_batch, read):
            await progress.report(upload, start + writer.written)
        if checksum is not None and writer.sha1.digest() != checksum:
            raise UploadError("checksum_mismatch", "The body does not match 'Upload-Checksum'.", 460)
    except files.TooMuchData:
        await asyncio.to_thread(writer.rollback)
        raise ClientError("too_large", f"Only {remaining} more bytes fit in this upload.") from None
    except BaseException:
        await asyncio.to_thread(writer.rollback)
        raise
    finally:
        await asyncio.to_thread(writer.close)
    if writer.written:
        moved = await Upload.objects.filter(pk=upload.pk, offset=start).aupdate(
            offset=start + writer.written, updated=timezone.now()
        )
        if not moved:  # another process appended meanwhile
            raise UploadError("conflict", "The upload moved on meanwhile; HEAD it and resume.", 409)
        upload.offset = start + writer.written
        metrics.RECEIVED_BYTES.inc(writer.written)
        if upload.offset < upload.size:
            await progress.report(upload, upload.offset)
    if upload.offset == upload.size and upload.completed is None:
        await _finish(user=user, upload=upload)
    return upload


async def _finish(*, user, upload: Upload) -> None:
    """Move the finished file to storage, mark the upload complete and post its message."""
    upload.stored_name = await asyncio.to_thread(files.store_finished, upload)
    upload.completed = timezone.now()
    await Upload.objects.filter(pk=upload.pk).aupdate(
        stored_name=upload.stored_name, completed=upload.completed, updated=upload.completed
    )
    metrics.FINISHED.inc()
    await progress.report(upload, upload.size)
    await upload_finished.asend(sender=Upload, upload=upload, user=user)


async def upload_terminate(*, upload: Upload) -> None:
    """Delete an upload and its bytes (tus termination); a posted message loses its attachment."""
    _lock_of(upload)
    progress.forget(upload.public_id)
    await upload.adelete()  # uploads.models.upload_deleted removes the files


async def upload_for_download(*, user, upload_id: str) -> Upload:
    """Return a finished, posted upload that ``user`` may read, or raise 404/403."""
    try:
        pk = uuid.UUID(hex=upload_id)
    except ValueError:
        raise _not_found() from None
    upload = await Upload.objects.filter(pk=pk, completed__isnull=False, message__isnull=False).afirst()
    if upload is None:
        raise _not_found()
    if not target(upload.room).can_join(user):
        raise ClientError("forbidden", "You may not read this room.")
    return upload


def uploads_cleanup(*, older_than: timedelta) -> dict[str, int]:
    """Delete uploads untouched for ``older_than``: unfinished ones, finished ones whose message
    is gone, and stray partial files; return how many of each."""
    cutoff = timezone.now() - older_than
    _, abandoned = Upload.objects.filter(completed__isnull=True, updated__lt=cutoff).delete()
    _, orphaned = Upload.objects.filter(
        completed__isnull=False, message__isnull=True, updated__lt=cutoff
    ).delete()
    known = {pk.hex for pk in Upload.objects.filter(completed__isnull=True).values_list("id", flat=True)}
    stray = 0
    for path in conf.temp_dir().glob("*.part"):
        if path.stem not in known and path.stat().st_mtime < cutoff.timestamp():
            path.unlink(missing_ok=True)
            stray += 1
    return {
        "abandoned": abandoned.get(Upload._meta.label, 0),
        "orphaned": orphaned.get(Upload._meta.label, 0),
        "stray_files": stray,
    }


@dataclass
class _Progress:
    user_id: int
    size: int
    offset: int = 0
    sent_at: float = float("-inf")
    timer: asyncio.TimerHandle | None = None


class ProgressReporter:
    """Sends ``upload_progress`` to the uploader's connections, at most one per interval per upload.

    A report inside the interval is not dropped: a trailing send at the end
    of the interval carries the latest offset, so the last word is never
    stale; the final offset is sent at once. State is per process.
    """

    MAX_TRACKED = 10_000

    def __init__(self) -> None:
        self._uploads: dict[str, _Progress] = {}

    async def report(self, upload: Upload, offset: int) -> None:
        """Note that ``upload`` reached ``offset``; send now or schedule a trailing send."""
        key = upload.public_id
        if key not in self._uploads and len(self._uploads) >= self.MAX_TRACKED:
            self._prune()
        entry = self._uploads.setdefault(key, _Progress(user_id=upload.user_id, size=upload.size))
        entry.offset = max(entry.offset, offset)
        wait = entry.sent_at + conf.progress_interval() - time.monotonic()
        if entry.offset < entry.size and wait > 0:
            if entry.timer is None:
                entry.timer = asyncio.get_running_loop().call_later(wait, self._trailing, key)
            return
        await self._send(key, entry)

    def forget(self, key: str) -> None:
        """Stop tracking an upload (terminated)."""
        entry = self._uploads.pop(key, None)
        if entry and entry.timer:
            entry.timer.cancel()

    def _trailing(self, key: str) -> None:
        entry = self._uploads.get(key)
        if entry is not None:
            entry.timer = None
            spawn(self._send(key, entry))

    async def _send(self, key: str, entry: _Progress) -> None:
        if entry.timer:
            entry.timer.cancel()
            entry.timer = None
        entry.sent_at = time.monotonic()
        if entry.offset >= entry.size:
            self._uploads.pop(key, None)
        event = {"type": "upload_progress", "id": key, "offset": entry.offset, "size": entry.size}
        await publish_to_user(entry.user_id, event)

    def _prune(self) -> None:
        """Forget idle uploads (no send pending, none for a minute)."""
        idle_before = time.monotonic() - 60
        for key, entry in list(self._uploads.items()):
            if entry.timer is None and entry.sent_at < idle_before:
                del self._uploads[key]


progress = ProgressReporter()
