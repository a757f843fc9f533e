"""No credential in a log line: the filter itself, Django's logging, and `make serve`'s uvicorn."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from uvicorn.logging import AccessFormatter

from realtime.logfilters import RedactCredentials
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
