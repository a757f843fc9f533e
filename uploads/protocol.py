"""The tus 1.0 wire format: headers in, headers out, and the errors the protocol names."""

from __future__ import annotations

import base64
import binascii
import unicodedata

from realtime import ClientError

from . import conf

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum"
CHECKSUM_ALGORITHMS = "sha1"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
MAX_FILENAME = 200
# Header values are integers of at most this many digits (Upload-Length, Upload-Offset).
MAX_DIGITS = 18


class UploadError(ClientError):
    """A client error with the status tus prescribes (409, 412, 415, 460...)."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(code, detail)
        self.status = status

    @property
    def http_status(self) -> int:
        """Return the HTTP status this error answers with."""
        return self.status


def server_headers() -> dict[str, str]:
    """Return what the server supports, for OPTIONS (and the 412 of a wrong version)."""
    return {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(conf.max_size()),
        "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
    }


def check_version(value: str | None) -> None:
    """Raise 412 unless the client speaks tus 1.0.0 (every request but OPTIONS)."""
    if value != TUS_VERSION:
        raise UploadError("unsupported_version", f"Send 'Tus-Resumable: {TUS_VERSION}'.", 412)


def parse_int(name: str, value: str | None) -> int:
    """Return a non-negative integer header, or raise 400."""
    if value is None:
        raise ClientError("invalid", f"The '{name}' header is required.")
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        raise ClientError("invalid", f"'{name}' must be a non-negative integer.")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """Return ``Upload-Metadata`` (``key base64,key base64``) decoded, or raise 400."""
    result: dict[str, str] = {}
    if not value or not value.strip():
        return result
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or key in result or not key.isascii():
            raise ClientError("invalid", "'Upload-Metadata' must be 'key base64' pairs, comma-separated.")
        try:
            decoded = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            result[key] = decoded.decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ClientError("invalid", f"Metadata {key[:40]!r} is not base64 of UTF-8 text.") from None
    return result


def parse_checksum(value: str | None) -> bytes | None:
    """Return the SHA-1 digest an ``Upload-Checksum`` header asks for, or None without one."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm.lower() != "sha1":
        raise ClientError("invalid", f"Unsupported checksum algorithm; use {CHECKSUM_ALGORITHMS}.")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != 20:
        raise ClientError("invalid", "'Upload-Checksum' must be 'sha1 <base64 of 20 bytes>'.")
    return digest


def clean_filename(raw: str) -> str:
    """Return a display name: no directories, no control or bidi characters, at most 200 characters.

    The name is only ever shown and sent in Content-Disposition; the bytes
    are stored under a generated name, so no name can reach the filesystem.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    # Categories C*: controls, format (bidi overrides that disguise ".exe"), unassigned.
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = " ".join(name.split()).strip(". ")
    if not name:
        return "file"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and stem and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME - len(ext) - 1].rstrip() + "." + ext if ext else name[:MAX_FILENAME]
    return name
