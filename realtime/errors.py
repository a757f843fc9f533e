"""The one error type a client sees: an error event on a socket, a JSON error over HTTP."""

from __future__ import annotations

# Status of each error code over HTTP (the wire contract, section 2).
HTTP_STATUS = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid": 400,
    "too_large": 413,
    "rate_limited": 429,
    "binary_unsupported": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unavailable": 503,
}


class ClientError(Exception):
    """A client's mistake: sent as an error event (WebSocket) or JSON error (HTTP)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    @property
    def http_status(self) -> int:
        """Return the HTTP status this error answers with."""
        return HTTP_STATUS.get(self.code, 400)


def parse_after(raw: str | None) -> int | None:
    """Return an ``after`` event id (a query parameter or ``Last-Event-ID``), or raise ClientError."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ClientError("invalid", "'after' must be a non-negative integer id.")
    return int(raw)
