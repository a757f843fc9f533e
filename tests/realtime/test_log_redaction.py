"""No credential in a log line: the filter itself, Django's logging, and `make serve`'s uvicorn."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from uvicorn.logging import AccessFormatter

from realtime.logfilters import EscapeControlCharacters, JsonFormatter, RedactCredentials
from tests.conftest import ROOT
from tests.serve import clean_env

TOKEN = "Zq3vX9-secret_TOKEN.value~42"


def filtered(msg: object, *args: object, exc_info=None) -> logging.LogRecord:
    """Return a record of ``msg % args`` after RedactCredentials."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, exc_info)
    assert RedactCredentials().filter(record) is True  # redacted, never dropped
    return record


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        (f"/ws/rooms/x/?access_token={TOKEN}", "/ws/rooms/x/?access_token=[redacted]"),
        (f"/sse/rooms/x/?a=1&access_token={TOKEN}&b=2", "/sse/rooms/x/?a=1&access_token=[redacted]&b=2"),
        (f'"WebSocket /ws/?ACCESS_TOKEN={TOKEN}" 403', '"WebSocket /ws/?ACCESS_TOKEN=[redacted]" 403'),
        (f"/ws/?access%5Ftoken={TOKEN} x", "/ws/?access%5Ftoken=[redacted] x"),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer [redacted]"),
        (f"[(b'authorization', b'bearer {TOKEN}')]", "[(b'authorization', b'bearer [redacted]')]"),
        ("/ws/rooms/x/?token_count=3", "/ws/rooms/x/?token_count=3"),
    ],
)
def test_credentials_are_redacted_and_the_rest_kept(logged, expected):
    assert filtered(logged).getMessage() == expected
    assert filtered("%s", logged).getMessage() == expected


@pytest.mark.parametrize("template", ["GET /ws/?access_token=%s done", "Authorization: Bearer %s"])
def test_a_format_string_that_fills_in_the_credential_is_redacted_after_formatting(template):
    record = filtered(template, TOKEN)
    assert TOKEN not in record.getMessage()
    assert "[redacted]" in record.getMessage()


def test_mapping_arguments_are_redacted():
    record = filtered(
        "WebSocket CONNECT %(path)s [%(client)s]", {"path": f"/ws/?access_token={TOKEN}", "client": "c"}
    )
    assert record.getMessage() == "WebSocket CONNECT /ws/?access_token=[redacted] [c]"


def test_uvicorns_access_formatter_still_reads_its_arguments():
    record = filtered(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/api/rooms?access_token={TOKEN}", "1.1", 200
    )
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert line == '127.0.0.1:5000 - "GET /api/rooms?access_token=[redacted] HTTP/1.1" 200 OK'


def test_a_traceback_quoting_a_url_is_redacted():
    try:
        raise ValueError(f"bad URL /ws/?access_token={TOKEN}")
    except ValueError:
        record = filtered("failed", exc_info=sys.exc_info())
    text = logging.Formatter().format(record)
    assert "ValueError: bad URL /ws/?access_token=[redacted]" in text
    assert TOKEN not in text


def test_djangos_logging_redacts_every_logger_once(tmp_path):
    script = f"""
import django, logging
django.setup()
logging.getLogger("django.channels.server").info(
    "WebSocket CONNECT %(path)s [%(client)s]", {{"path": "/ws/?access_token={TOKEN}", "client": "c"}}
)
logging.getLogger("realtime.handshake").warning("refused %s", "/ws/?access_token={TOKEN}")
"""
    # DEBUG on: Django's own "django" handler would print the first line again, unfiltered.
    env = clean_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), DJANGO_DEBUG="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert TOKEN not in output
    assert output.count("WebSocket CONNECT /ws/?access_token=[redacted] [c]") == 1
    assert "refused /ws/?access_token=[redacted]" in output


# -- no forged line: every value a record carries is escaped ------------------------------------------

# What a request's path or header decodes to that could start a line, or restyle the terminal.
FORGERIES = [
    ("/ws/echo/a\r\nFORGED INFO x/", "/ws/echo/a\\r\\nFORGED INFO x/"),
    ("/ws/echo/\x1b[31mred/", "/ws/echo/\\x1b[31mred/"),
    ("/ws/echo/a\x85FORGED/", "/ws/echo/a\\x85FORGED/"),
    ("/ws/echo/a\u2028FORGED\u2029/", "/ws/echo/a\\u2028FORGED\\u2029/"),
    ("/ws/echo/\u202edesrever/", "/ws/echo/\\u202edesrever/"),
    ("/ws/echo/caf\u00e9/", "/ws/echo/caf\u00e9/"),  # printable text is left alone
]


def escaped(msg: object, *args: object, exc_info=None) -> logging.LogRecord:
    """Return a record of ``msg % args`` after both filters, in the order the handlers run them."""
    record = filtered(msg, *args, exc_info=exc_info)
    assert EscapeControlCharacters().filter(record) is True
    return record


def one_line(text: str) -> bool:
    """Return whether ``text`` holds no line break and no other control character."""
    return len(text.splitlines()) == 1 and all(c.isprintable() for c in text)


@pytest.mark.parametrize(("value", "expected"), FORGERIES)
def test_a_value_from_a_request_is_escaped_in_the_line(value, expected):
    record = escaped("WebSocket handshake refused: %s (%s)", value, "not found")
    assert record.getMessage() == f"WebSocket handshake refused: {expected} (not found)"
    assert one_line(logging.Formatter("%(levelname)s %(message)s").format(record))
    # Logged without arguments (an f-string), it is escaped too.
    assert escaped(f"refused {value}").getMessage() == f"refused {expected}"
    assert escaped("%(path)s", {"path": value}).getMessage() == expected


def test_repr_and_numbers_format_as_before_and_the_programs_own_text_is_kept():
    record = escaped("%r %d %s", "a\nb", 3, ValueError("x\ny"))
    assert record.getMessage() == "'a\\nb' 3 x\\ny"
    # A format string is the program's: Daphne colours its request lines.
    assert escaped("\x1b[32mHTTP %s\x1b[0m", "/a\nb").getMessage() == "\x1b[32mHTTP /a\\nb\x1b[0m"
    # A trailing newline (uvicorn's "Exception in ASGI application\n") is dropped, not escaped.
    assert escaped("Exception in ASGI application\n").getMessage() == "Exception in ASGI application"


def test_uvicorns_access_formatter_reads_the_escaped_arguments():
    record = escaped('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/a\r\nFORGED", "1.1", 404)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert line == '127.0.0.1:5000 - "GET /a\\r\\nFORGED HTTP/1.1" 404 Not Found'


def test_a_traceback_keeps_its_lines_and_escapes_the_rest():
    try:
        raise ValueError("bad path /a\r\x1b[31mFORGED\u2028")
    except ValueError:
        record = escaped("failed", exc_info=sys.exc_info())
    text = logging.Formatter().format(record)
    assert "ValueError: bad path /a\\r\\x1b[31mFORGED\\u2028" in text
    assert all(one_line(line) for line in text.split("\n"))


@pytest.mark.parametrize(("value", "expected"), FORGERIES)
def test_a_json_line_is_one_line_whatever_its_fields_hold(value, expected):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "refused %s", (value,), None)
    record.path = value  # an extra field, which the filters leave to the formatter
    line = JsonFormatter().format(record)
    assert one_line(line)
    data = json.loads(line)
    assert (data["message"], data["path"]) == (f"refused {value}", value)  # JSON escapes, and decodes back
    assert one_line(JsonFormatter().format(escaped("refused %s", value)))


@pytest.mark.parametrize("json_mode", ["0", "1"], ids=["text", "json"])
def test_djangos_logging_escapes_every_line(tmp_path, json_mode):
    script = """
import django, logging
django.setup()
logging.getLogger("realtime.handshake").info(
    "WebSocket handshake refused: %s (%s)", "/ws/echo/a\\r\\nFORGED\\x1b[31m\\x85\\u2028/", "not found"
)
logging.getLogger("django.channels.server").info(
    "WebSocket REJECT %(path)s [%(client)s]", {"path": "/a\\nFORGED", "client": "c"}
)
"""
    env = clean_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), DJANGO_LOG_JSON=json_mode)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output = result.stderr.decode()
    lines = output.splitlines()
    assert len(lines) == 2 and all(one_line(line) for line in lines), output
    if json_mode == "1":
        assert json.loads(lines[1])["message"] == "WebSocket REJECT /a\\nFORGED [c]"
    else:
        assert lines[1].endswith("WebSocket REJECT /a\\nFORGED [c]")
