"""Upload bytes on disk and in storage: partial files, the hand-off to storage, serving.

Why a local partial file: Django's Storage API has ``save``/``open``/``delete``
but no append, and object stores (S3 and friends) cannot append either. So a
running upload grows a file under ``UPLOADS_TEMP_DIR`` (written at
its offset, so a retried PATCH overwrites rather than duplicates), and the
finished file is handed to ``storages[UPLOADS_STORAGE].save()`` once.
With ``FileSystemStorage`` on the same filesystem that hand-off is a rename
(``temporary_file_path``); other backends stream it up in blocks. Chunk
files concatenated on completion would cost a second full copy for nothing.

The temp dir must be shared by every server process that can receive a
PATCH for the upload (one host, or sticky routing).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
from pathlib import Path

from django.core.files import File
from django.core.files.storage import storages
from django.http import FileResponse, StreamingHttpResponse

from . import conf

logger = logging.getLogger(__name__)

BLOCK = 64 * 1024
# Blocks copied per trip to a worker thread: few trips, still small steps.
BATCH = 16
# Raster images only: an SVG can carry script, so it is downloaded, never shown inline.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"})


def storage():
    """Return the storage finished uploads go to (an alias of ``STORAGES``)."""
    return storages[conf.storage()]


def partial_path(public_id: str) -> Path:
    """Return where the bytes of a running upload accumulate."""
    return conf.temp_dir() / f"{public_id}.part"


def partial_create(upload) -> None:
    """Create the empty partial file of a new upload."""
    path = partial_path(upload.public_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=False)


class TooMuchData(Exception):
    """The body holds more bytes than the upload has room for."""


class ChunkWriter:
    """Writes one PATCH body into a partial file at the upload's offset, a block at a time.

    At most one block is in memory; the body comes from ``request.read``,
    which reads Django's spooled request body (on disk past
    ``FILE_UPLOAD_MAX_MEMORY_SIZE``). Called in a worker thread.
    """

    def __init__(self, path: Path, offset: int, remaining: int) -> None:
        self.file = open(path, "r+b")  # noqa: SIM115 - closed by close()
        self.start = offset
        self.remaining = remaining
        self.written = 0
        self.sha1 = hashlib.sha1(usedforsecurity=False)
        # Bytes past the offset are leftovers of a write that never committed.
        self.file.truncate(offset)
        self.file.seek(offset)

    def copy_batch(self, read) -> bool:
        """Copy up to BATCH blocks from ``read``; return False once the body is exhausted."""
        for _ in range(BATCH):
            block = read(BLOCK)
            if not block:
                return False
            if self.written + len(block) > self.remaining:
                raise TooMuchData
            self.sha1.update(block)
            self.file.write(block)
            self.written += len(block)
        return True

    def rollback(self) -> None:
        """Forget this PATCH's bytes (mismatch, overflow, failure)."""
        self.file.truncate(self.start)
        self.written = 0

    def close(self) -> None:
        """Flush and close the partial file."""
        self.file.close()


class _PartialFile(File):
    """The finished partial file; ``temporary_file_path`` lets FileSystemStorage move it."""

    def temporary_file_path(self) -> str:
        return self.file.name


def store_finished(upload) -> str:
    """Hand the finished partial file to storage under a generated name; return the stored name."""
    path = partial_path(upload.public_id)
    with open(path, "rb") as fh:
        name = storage().save(f"attachments/{upload.public_id}", _PartialFile(fh), max_length=255)
    path.unlink(missing_ok=True)  # still there unless storage moved it
    return name


def discard_files(public_id: str, stored_name: str) -> None:
    """Delete an upload's partial file and stored file, whichever exist; log failures."""
    partial_path(public_id).unlink(missing_ok=True)
    if stored_name:
        try:
            storage().delete(stored_name)
        except Exception:
            logger.exception("Could not delete stored upload %s", stored_name)


def content_type_for(name: str) -> str:
    """Return the Content-Type served for a file: guessed from its name, never from the client."""
    guessed, encoding = mimetypes.guess_type(name, strict=True)
    # "x.tar.gz" guesses an encoding; serving it as such would make browsers unpack it.
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    return guessed


class AsyncFileResponse(FileResponse):
    """A FileResponse that reads its file in a worker thread, one block at a time.

    Django 5.2 (``StreamingHttpResponse.__aiter__``) consumes a synchronous
    file iterator under ASGI with ``sync_to_async(list)``: the whole file in
    memory at once. An async iterator keeps memory flat. Read from Django
    5.2; tests/test_uploads.py asserts the response streams asynchronously.
    """

    block_size = BLOCK

    def _set_streaming_content(self, value) -> None:
        super()._set_streaming_content(value)  # headers and closing, as FileResponse does
        if getattr(self, "file_to_stream", None) is not None:
            StreamingHttpResponse._set_streaming_content(self, self._blocks(self.file_to_stream))

    async def _blocks(self, filelike):
        while block := await asyncio.to_thread(filelike.read, self.block_size):
            yield block


def file_response(upload) -> FileResponse:
    """Return the streamed response that serves a finished upload, with safe headers."""
    content_type = content_type_for(upload.filename)
    inline = content_type in INLINE_TYPES
    response = AsyncFileResponse(
        storage().open(upload.stored_name, "rb"),
        as_attachment=not inline,
        filename=upload.filename,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Defence in depth should a browser render it anyway: no scripts, no origin.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
