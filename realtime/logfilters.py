"""Keep credentials out of log lines.

API tokens travel as ``?access_token=`` on WebSocket and SSE handshakes (a
browser cannot set headers there) and as ``Authorization: Bearer`` elsewhere.
Servers log request lines with their query string: uvicorn's
``"WebSocket /ws/<topic>/?access_token=…" [accepted]`` on ``uvicorn.error``,
its access log, Daphne's through ``django.channels.server``.
:class:`RedactCredentials` is a handler filter that rewrites such records
before any formatter sees them. ``project/settings.py`` puts it on the console
handler; ``project/uvicorn_logging.json`` (``make serve``'s ``--log-config``)
puts it on uvicorn's own handlers, which do not propagate to the root logger.

:class:`JsonFormatter` writes one JSON object per line (``DJANGO_LOG_JSON=1``
selects it for the console handler, docs/operations.md): the filter has run
by then, and it redacts the fields a record carries in ``extra`` too.

:class:`EscapeControlCharacters`, the filter after it, keeps each record on
its line: a request's path or header decoded into a log line could carry a
line break (``%0d%0a``, NEL, U+2028) and start a forged line of its own, or
an escape sequence that restyles the terminal. It writes every control
character of the values a record carries as its Python escape (``\n``,
``\x1b``, ``\u2028``), as Django does for its own request lines. The JSON
formatter escapes what JSON itself would leave raw.

This module imports nothing from Django: uvicorn loads it while it configures
logging, before the settings exist.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Mapping

REDACTED = "[redacted]"

# ``access_token=<value>``: the value ends at the next parameter, a space, a
# quote or a backslash (a repr). ``access%5Ftoken`` is what Django decodes to
# the same name, so it is a credential too.
_QUERY_TOKEN = re.compile(r"(?i)(access(?:_|%5f)token=)[^&\s\"'\\]*")
# In a record's format string (``"... access_token=%s"``) the value is a
# placeholder, filled from the arguments (redacted on their own): keep it, or
# the record would no longer format and logging would print the raw arguments.
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrifx]")
# ``Bearer <value>`` in a header as logged or repr'd (``Authorization: Bearer
# x``, ``(b'authorization', b'Bearer x')``).
_BEARER = re.compile(r"(?i)(\bbearer\s+)[^\s\"',;)\]}\\]+")


def redact(text: str) -> str:
    """Return ``text`` with every credential replaced by ``[redacted]``."""
    lowered = text.lower()
    if "token" not in lowered and "bearer" not in lowered:
        return text  # the common case: nothing to look for
    text = _QUERY_TOKEN.sub(rf"\g<1>{REDACTED}", text)
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


def _fills_a_credential(template: str) -> bool:
    """Return whether a format string puts an argument where a credential goes (``access_token=%s``)."""
    return any(
        _PLACEHOLDER.match(match.group(0), len(match.group(1)))
        for pattern in (_QUERY_TOKEN, _BEARER)
        for match in pattern.finditer(template)
    )


def _redact_arg(value: object) -> object:
    """Return ``value`` redacted when its text carries a credential, else ``value`` itself.

    Strings stay strings; another object whose ``str()`` carries a credential
    (a URL, a scope dict) becomes its redacted text, so ``%s`` and ``%r``
    still format, and numbers pass through untouched for ``%d``.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        text = value.decode("latin-1")
        cleaned = redact(text)
        return value if cleaned == text else cleaned.encode("latin-1")
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactCredentials(logging.Filter):
    """Rewrite a record's message, arguments and traceback so no credential is logged.

    The arguments are redacted one by one rather than merged into the message,
    because some formatters read them (uvicorn's access formatter unpacks
    ``record.args``). The record always passes; only its text changes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.args and _fills_a_credential(record.msg):
            # The argument is the credential itself: format first, then redact the text.
            record.msg, record.args = redact(record.getMessage()), ()
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif record.msg is not None and not isinstance(record.msg, int | float):
            text = str(record.msg)
            cleaned = redact(text)
            if cleaned != text:
                record.msg = cleaned
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        # Formatters reuse exc_text when it is set: the traceback is formatted
        # here, redacted (an exception's message may quote a URL).
        if _format_traceback(record):
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _format_traceback(record: logging.LogRecord) -> bool:
    """Set ``record.exc_text`` from its ``exc_info`` as a formatter would; return whether it has one."""
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    return bool(record.exc_text)


# What ends a line or restyles a terminal: C0 controls (CR, LF, ESC), DEL, C1
# controls (NEL), the Unicode line and paragraph separators, and the
# bidirectional controls that reorder what a reader sees of a line.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# In a traceback, which spans lines by design: all of those but the newline.
_UNSAFE_IN_TRACEBACK = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# What json.dumps(ensure_ascii=False) writes raw (it escapes the C0 controls itself).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape(text: str) -> str:
    """Return ``text`` with each control character written as its Python escape (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(_escaped, text)


class _EscapedText(str):
    """A value's text, escaped; ``%r`` shows the value's own repr (which escapes them already)."""

    value_repr: str

    def __repr__(self) -> str:
        return self.value_repr


def _escape_arg(value: object) -> object:
    """Return ``value``, or its escaped text when its text carries a control character."""
    if value is None or isinstance(value, bool | int | float | bytes):
        return value  # bytes format as their repr, escaped already
    text = value if isinstance(value, str) else str(value)
    cleaned = escape(text)
    if cleaned == text:
        return value
    escaped = _EscapedText(cleaned)
    escaped.value_repr = escape(repr(value))
    return escaped


class EscapeControlCharacters(logging.Filter):
    """Escape the control characters of every value a record carries, so that a record is one line.

    The arguments are escaped one by one (they are what comes from a
    request; uvicorn's access formatter reads them); the format string is
    the program's own and may carry colours (Daphne's request lines). A
    message logged without arguments is escaped whole, but for a trailing
    newline, which the formatter's own line end makes redundant. A
    traceback keeps its newlines. The record always passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_escape_arg(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _escape_arg(value) for key, value in record.args.items()}
        if not record.args:
            record.msg = _escape_message(record.msg)
        if _format_traceback(record):
            record.exc_text = _UNSAFE_IN_TRACEBACK.sub(_escaped, record.exc_text)
        return True


def _escape_message(msg: object) -> object:
    """Return a message logged without arguments, escaped."""
    if isinstance(msg, str):
        return escape(msg.rstrip("\n"))
    if msg is None or isinstance(msg, bool | int | float):
        return msg
    text = str(msg)
    cleaned = escape(text)
    return msg if cleaned == text else cleaned


# What every LogRecord has; anything else on a record came from ``extra=`` and is a field of its own.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, then its ``extra`` fields.

    ``{"time": "2026-11-22T10:00:00.123Z", "level": "INFO", "logger":
    "realtime.connections", "message": "connection ended: ...", "transport":
    "websocket", "topic": "echo", "duration_s": 12.5, "code": "1000"}``;
    ``exc_info`` for a traceback. Field values other than strings, numbers,
    booleans and None are written as their (redacted) text.
    """

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = _field(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = record.stack_info
        # Raw in a JSON string, a line or paragraph separator still breaks the line for many readers.
        return _UNSAFE_IN_JSON.sub(_json_escaped, json.dumps(line, ensure_ascii=False, default=str))


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _field(value: object) -> object:
    """Return an ``extra`` value as JSON can hold it, without a credential."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value))
