"""Property-based fuzzing (hypothesis) of the WebSocket frame path and the HTTP API's inputs.

Whatever a client sends, the answer is one the contract names: a frame gets
its normal events or an error event with a contract code, the socket stays
open, and nothing is stored for invalid input; an API request gets JSON,
never a 500 (the wire contract, sections 2 and 3).
"""

from __future__ import annotations

import json
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.models import Message
from chat.service import clean_text
from realtime.errors import ClientError
from realtime.models import ApiToken
from realtime.transport import decode_frame
from tests.asgi import answers_until_pong, http, joined, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_CODES = {"bad_json", "unknown_type", "invalid", "too_large", "rate_limited", "binary_unsupported"}
ROOM = "fuzz"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no example database in the work tree
)

# Any text, lone surrogates and NUL included (JSON escapes carry them onto the wire).
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(
        ["", " ", "\ud800", "a\udfffb", "\x00", "hi\x00", "\u2028", "\ufeff", "x" * 2001, " " * 3]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=8,
)
frame_types = st.one_of(
    st.sampled_from(["message", "typing", "ping", "hello", "error", "Message", "frame_message", "__init__"]),
    any_text,
    json_values,
)
objects = st.one_of(
    st.fixed_dictionaries({"type": st.just("message"), "text": st.one_of(any_text, json_values)}),
    st.fixed_dictionaries({"type": frame_types}, optional={"text": json_values, "extra": json_values}),
    st.dictionaries(any_text, json_values, max_size=4),
)
frames = st.one_of(
    objects.map(json.dumps),  # ASCII on the wire: escapes carry surrogates and NUL
    objects.map(lambda frame: json.dumps(frame, ensure_ascii=False)).filter(
        lambda text: not any(0xD800 <= ord(c) <= 0xDFFF for c in text)  # what UTF-8 can carry
    ),
    json_values.map(json.dumps),
    st.text(max_size=80),  # raw text, JSON or not (a real text frame is valid UTF-8)
    st.binary(max_size=40),
    st.integers(64 * 1024 - 20, 64 * 1024 + 20).map(
        lambda n: json.dumps({"type": "message", "text": "x" * n})
    ),
)


@pytest.fixture
def unlimited(settings):
    """No rate limit: every valid message is stored, so storage is what the fuzz sees."""
    settings.REALTIME_RATE_LIMIT = "1000000/1s"
    settings.CHAT_TYPING_RATE = "1000000/1s"


@pytest.fixture
async def socket(unlimited):
    alice = await make_user("alice")
    async with joined(f"/ws/rooms/{ROOM}/", user=alice) as comm:
        yield comm


def expected(frame: str | bytes) -> str:
    """Return what a frame must get: "error:<code>", "pong", "message" or "nothing" (typing).

    A message's text is judged by the chat's own rule (chat.service.clean_text).
    """
    try:
        decoded = decode_frame(None, frame) if isinstance(frame, bytes) else decode_frame(frame, None)
    except ClientError as exc:
        return f"error:{exc.code}"
    kind = decoded.get("type")
    if not isinstance(kind, str):
        return "error:invalid"
    if kind == "ping":
        return "pong"
    if kind == "typing":
        return "nothing"  # the others hear it; the sender does not
    if kind != "message":
        return "error:unknown_type"
    try:
        clean_text(decoded.get("text"))
    except ClientError as exc:
        return f"error:{exc.code}"
    return "message"


@FUZZ
@given(frame=frames)
async def test_any_frame_gets_its_events_or_a_contract_error_and_the_socket_stays_open(socket, frame):
    stored = await Message.objects.acount()
    # As the server passes a frame on (the communicator's send_to refuses empty frames).
    kind = "bytes" if isinstance(frame, bytes) else "text"
    await socket.send_input({"type": "websocket.receive", kind: frame})
    want = expected(frame)
    answers = await answers_until_pong(socket, pongs=2 if want == "pong" else 1)
    for event in answers:
        if event["type"] == "error":
            assert event["code"] in ERROR_CODES and isinstance(event["detail"], str), event
    kinds = [e["type"] if e["type"] != "error" else f"error:{e['code']}" for e in answers]
    if want == "pong":
        assert kinds == ["pong"], kinds
    elif want == "nothing":
        assert kinds == []
    else:
        assert kinds == [want], (frame[:200], kinds)
    assert await Message.objects.acount() == stored + (1 if want == "message" else 0)
    if want == "message":
        assert answers[0]["text"] == clean_text(json.loads(frame)["text"])


@pytest.fixture
async def api(unlimited):
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    async with http(authorization=f"Bearer {raw}") as client:
        yield client


def assert_json(response, statuses: set[int]) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    return response.json()


# Query values as they travel: percent-encoded, of text or of any bytes (not UTF-8 too).
query_values = st.one_of(
    st.none(),
    st.text(max_size=30).map(lambda text: quote_from_bytes(text.encode())),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.binary(max_size=20).map(quote_from_bytes),
)


@FUZZ
@given(limit=query_values, after=query_values)
async def test_api_reads_answer_json_whatever_limit_and_after(api, limit, after):
    query = "&".join(
        f"{name}={value}" for name, value in (("limit", limit), ("after", after)) if value is not None
    )
    body = assert_json(await api.get(f"/api/rooms/{ROOM}/messages?{query}"), {200, 400})
    assert set(body) in ({"messages"}, {"error", "detail"})
    if "error" in body:
        assert body["error"] == "invalid"


bodies = st.one_of(
    st.fixed_dictionaries({"text": st.one_of(any_text, json_values)}).map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
)


@FUZZ
@given(body=bodies)
async def test_api_posts_answer_json_and_store_only_valid_messages(api, body):
    stored = await Message.objects.acount()
    response = await api.post(
        f"/api/rooms/{ROOM}/messages", content=body, headers={"content-type": "application/json"}
    )
    answer = assert_json(response, {201, 400, 413})
    if response.status_code == 201:
        assert answer["type"] == "message" and answer["text"] == clean_text(json.loads(body)["text"])
    else:
        assert answer["error"] in {"bad_json", "invalid", "too_large"}
    assert await Message.objects.acount() == stored + (response.status_code == 201)
