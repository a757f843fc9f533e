"""Property-based fuzzing (hypothesis) of any topic's WebSocket frame path, on the echo topic.

Whatever a client sends, the answer is one the contract names: a frame gets
its events or an error event with a contract code, and the socket stays
open (the wire contract, section 3). The chat's frames and HTTP API:
tests/chat/test_fuzz.py.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from realtime.errors import ClientError
from realtime.transport import decode_frame
from tests.asgi import answers_until_pong, echo_application, joined, make_user
from tests.realtime.echo import LOG

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_CODES = {"bad_json", "unknown_type", "invalid", "too_large", "rate_limited", "binary_unsupported"}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no example database in the work tree
)

# Any text, lone surrogates and NUL included (JSON escapes carry them onto the wire).
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(["", " ", "\ud800", "a\udfffb", "\x00", "\u2028", "\ufeff", " " * 3]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=8,
)
frame_types = st.one_of(
    st.sampled_from(["say", "ping", "hello", "error", "Say", "frame_say", "__init__", "open", "can_join"]),
    any_text,
    json_values,
)
objects = st.one_of(
    st.fixed_dictionaries({"type": st.just("say"), "text": st.text(max_size=40)}),
    st.fixed_dictionaries({"type": frame_types}, optional={"text": json_values, "extra": json_values}),
    st.dictionaries(any_text, json_values, max_size=4),
)
frames = st.one_of(
    objects.map(json.dumps),  # ASCII on the wire: escapes carry surrogates and NUL
    json_values.map(json.dumps),
    st.text(max_size=80),  # raw text, JSON or not (a real text frame is valid UTF-8)
    st.binary(max_size=40),
    st.integers(64 * 1024 - 20, 64 * 1024 + 20).map(lambda n: json.dumps({"type": "say", "text": "x" * n})),
)


@pytest.fixture
async def socket():
    LOG.clear()
    alice = await make_user("alice")
    async with joined("/ws/echo/fuzz/", user=alice, app=echo_application()) as comm:
        yield comm


def expected(frame: str | bytes) -> str:
    """Return what a frame must get: "error:<code>", "pong" or "said"."""
    try:
        decoded = decode_frame(None, frame) if isinstance(frame, bytes) else decode_frame(frame, None)
    except ClientError as exc:
        return f"error:{exc.code}"
    kind = decoded.get("type")
    if not isinstance(kind, str):
        return "error:invalid"
    assume(kind != "crash")  # the echo topic's failing handler, tested on its own
    if kind == "ping":
        return "pong"
    if kind == "say":
        # The echo topic says any text back; its handler is not what is fuzzed here.
        assume(isinstance(decoded.get("text", ""), str))
        assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in decoded.get("text", "")))
        return "said"
    return "error:unknown_type"


@FUZZ
@given(frame=frames)
async def test_any_frame_to_any_topic_gets_its_events_or_a_contract_error_and_the_socket_stays_open(
    socket, frame
):
    want = expected(frame)
    # As the server passes a frame on (the communicator's send_to refuses empty frames).
    kind = "bytes" if isinstance(frame, bytes) else "text"
    await socket.send_input({"type": "websocket.receive", kind: frame})
    answers = await answers_until_pong(socket, pongs=2 if want == "pong" else 1)
    for event in answers:
        if event["type"] == "error":
            assert event["code"] in ERROR_CODES and isinstance(event["detail"], str), event
    kinds = [e["type"] if e["type"] != "error" else f"error:{e['code']}" for e in answers]
    if want == "pong":
        assert kinds == ["pong"], kinds
    else:
        assert kinds == [want], (frame[:200], kinds)
