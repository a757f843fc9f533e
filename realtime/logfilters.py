"""Keep credentials out of log lines.

API tokens travel as ``?access_token=`` on WebSocket and SSE handshakes (a
browser cannot set headers there) and as ``Authorization: Bearer`` elsewhere.
Servers log request lines with their query string: uvicorn's
``"WebSocket /ws/rooms/x/?access_token=…" [accepted]`` on ``uvicorn.error``,
its access log, Daphne's through ``django.channels.server``.
:class:`RedactCredentials` is a handler filter that rewrites such records
before any formatter sees them. ``project/settings.py`` puts it on the console
handler; ``project/uvicorn_logging.json`` (``make serve``'s ``--log-config``)
puts it on uvicorn's own handlers, which do not propagate to the root logger.

This module imports nothing from Django: uvicorn loads it while it configures
logging, before the settings exist.
"""

from __future__ import annotations

import logging
import re
import traceback

REDACTED = "[redacted]"

# ``access_token=<value>``: the value ends at the next parameter, a space, a
# quote or a backslash (a repr). ``access%5Ftoken`` is what Django decodes to
# the same name, so it is a credential too.
_QUERY_TOKEN = re.compile(r"(?i)(access(?:_|%5f)token=)[^&\s\"'\\]*")
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
        if isinstance(record.msg, str):
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
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback
            # here, redacted (an exception's message may quote a URL).
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
