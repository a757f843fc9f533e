"""FastInMemoryChannelLayer: Channels' own InMemoryChannelLayer expectations, run
against both layers to prove the drop-in claim, then what only the fast one does.

No database and no timing assertions: "nothing arrives" waits a short timeout,
expiry uses tiny expiries, and the O(1) claims are checked structurally.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from realtime.layers import OVERFLOW, FastInMemoryChannelLayer

LAYERS = [InMemoryChannelLayer, FastInMemoryChannelLayer]
both = pytest.mark.parametrize("layer_cls", LAYERS, ids=["stock", "fast"])


@pytest.fixture(params=LAYERS, ids=["stock", "fast"])
async def layer(request):
    """A layer of capacity 3 per implementation, flushed afterwards (as Channels' suite does)."""
    channel_layer = request.param(capacity=3)
    yield channel_layer
    await channel_layer.flush()
    await channel_layer.close()


@pytest.fixture
async def fast():
    channel_layer = FastInMemoryChannelLayer(capacity=3)
    yield channel_layer
    await channel_layer.flush()


async def nothing_arrives(layer, channel: str) -> bool:
    """Return True if no message arrives on ``channel`` within a short wait."""
    try:
        await asyncio.wait_for(layer.receive(channel), 0.1)
    except TimeoutError:
        return True
    return False


# -- conformance: both layers ---------------------------------------------------


async def test_send_receive(layer):
    await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
    message = await layer.receive("test-channel-1")
    assert message == {"type": "test.message", "text": "Ahoy-hoy!"}


async def test_send_capacity(layer):
    for _ in range(3):
        await layer.send("test-channel-1", {"type": "test.message"})
    with pytest.raises(ChannelFull):
        await layer.send("test-channel-1", {"type": "test.message"})


async def test_process_local_send_receive(layer):
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "text": "Local only please"})
    assert (await layer.receive(channel))["text"] == "Local only please"


async def test_multi_send_receive_keeps_order(layer):
    for n in (1, 2, 3):
        await layer.send("test-channel-3", {"type": f"message.{n}"})
    assert [(await layer.receive("test-channel-3"))["type"] for _ in range(3)] == [
        "message.1",
        "message.2",
        "message.3",
    ]


async def test_receive_waits_for_a_send(layer):
    receiver = asyncio.create_task(layer.receive("test-channel-1"))
    await asyncio.sleep(0)
    await layer.send("test-channel-1", {"type": "late"})
    assert (await asyncio.wait_for(receiver, 1))["type"] == "late"


async def test_groups_basic(layer):
    for channel in ("test-gr-chan-1", "test-gr-chan-2", "test-gr-chan-3"):
        await layer.group_add("test-group", channel)
    await layer.group_discard("test-group", "test-gr-chan-2")
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await asyncio.wait_for(layer.receive("test-gr-chan-1"), 1))["type"] == "message.1"
    assert (await asyncio.wait_for(layer.receive("test-gr-chan-3"), 1))["type"] == "message.1"
    assert await nothing_arrives(layer, "test-gr-chan-2")


async def test_group_discard_of_unknown_member_or_group_is_harmless(layer):
    await layer.group_discard("no-such-group", "test-channel-1")
    await layer.group_add("test-group", "test-channel-1")
    await layer.group_discard("test-group", "test-channel-2")
    await layer.group_discard("test-group", "test-channel-1")
    assert "test-group" not in layer.groups
    await layer.group_send("test-group", {"type": "message.1"})
    await layer.group_send("never-existed", {"type": "message.1"})
    assert await nothing_arrives(layer, "test-channel-1")


async def test_receivers_woken_by_group_send_have_run_when_it_returns(layer):
    """Consumers rely on this ordering: a sender sees its own echo before handling its next frame."""
    await layer.group_add("test-group", "test-channel-1")
    receiver = asyncio.create_task(layer.receive("test-channel-1"))
    await asyncio.sleep(0)
    await layer.group_send("test-group", {"type": "message.1"})
    assert receiver.done() and receiver.result()["type"] == "message.1"


async def test_group_send_to_a_full_member_does_not_raise(layer):
    await layer.group_add("test-group", "test-gr-chan-1")
    for _ in range(5):
        await layer.group_send("test-group", {"type": "message.1"})
    assert (await layer.receive("test-gr-chan-1"))["type"] == "message.1"


@both
async def test_expiry_single(layer_cls):
    layer = layer_cls(expiry=0.05)
    await layer.send("test-channel-1", {"type": "message.1"})
    assert len(layer.channels) == 1
    await asyncio.sleep(0.1)
    assert await nothing_arrives(layer, "test-channel-1")
    assert len(layer.channels) == 0


@both
async def test_expiry_unread(layer_cls):
    """A channel nobody reads any more is cleaned up by traffic on other channels."""
    layer = layer_cls(expiry=0.05)
    await layer.send("test-channel-1", {"type": "message.1"})
    await asyncio.sleep(0.1)
    await layer.send("test-channel-2", {"type": "message.2"})
    assert (await layer.receive("test-channel-2"))["type"] == "message.2"
    assert len(layer.channels) == 0


@both
async def test_expiry_multi(layer_cls):
    layer = layer_cls(expiry=0.05)
    for n in (1, 2, 3):
        await layer.send("test-channel-1", {"type": f"message.{n}"})
    assert (await layer.receive("test-channel-1"))["type"] == "message.1"
    await asyncio.sleep(0.1)
    await layer.send("test-channel-1", {"type": "message.4"})
    assert (await layer.receive("test-channel-1"))["type"] == "message.4"
    assert await nothing_arrives(layer, "test-channel-1")
    assert len(layer.channels) == 0


@both
async def test_an_expired_message_removes_its_channel_from_groups(layer_cls):
    layer = layer_cls(expiry=0.05)
    await layer.group_add("test-group", "dead-chan")
    await layer.group_add("test-group", "live-chan")
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await layer.receive("live-chan"))["type"] == "message.1"
    await asyncio.sleep(0.1)
    await layer.group_send("test-group", {"type": "message.2"})
    assert list(layer.groups["test-group"]) == ["live-chan"]
    assert (await layer.receive("live-chan"))["type"] == "message.2"


@both
async def test_a_receiver_evicted_by_expiry_still_gets_the_next_message(layer_cls):
    """Its expired message takes the channel out of its only group while it starts waiting."""
    layer = layer_cls(expiry=0.05)
    await layer.group_add("test-group", "test-channel-1")
    await layer.group_send("test-group", {"type": "message.1"})
    await asyncio.sleep(0.1)
    layer._next_sweep = float("inf")  # fast layer: no sweep first, receive() itself meets the expiry
    receiver = asyncio.create_task(layer.receive("test-channel-1"))
    await asyncio.sleep(0)
    assert not layer.groups.get("test-group")
    await layer.send("test-channel-1", {"type": "message.2"})
    assert (await asyncio.wait_for(receiver, 1))["type"] == "message.2"


async def test_group_expiry(layer):
    """A membership older than group_expiry ends, however busy the channel is."""
    await layer.group_add("test-group", "old-chan")
    await layer.group_add("test-group", "new-chan")
    # Age the join time rather than sleep: the stock layer compares whole seconds.
    layer.groups["test-group"]["old-chan"] -= layer.group_expiry + 2
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await layer.receive("new-chan"))["type"] == "message.1"
    assert await nothing_arrives(layer, "old-chan")
    assert list(layer.groups["test-group"]) == ["new-chan"]


async def test_group_add_renews_membership(layer):
    await layer.group_add("test-group", "test-channel-1")
    layer.groups["test-group"]["test-channel-1"] -= layer.group_expiry + 2
    await layer.group_add("test-group", "test-channel-1")
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await layer.receive("test-channel-1"))["type"] == "message.1"


async def test_flush_empties_everything(layer):
    await layer.send("test-channel-1", {"type": "message.1"})
    await layer.group_add("test-group", "test-channel-2")
    await layer.flush()
    assert layer.channels == {} and layer.groups == {}
    await layer.group_send("test-group", {"type": "message.2"})
    assert await nothing_arrives(layer, "test-channel-1")
    assert await nothing_arrives(layer, "test-channel-2")


async def test_close_is_a_noop(layer):
    await layer.send("test-channel-1", {"type": "message.1"})
    await layer.close()
    assert (await layer.receive("test-channel-1"))["type"] == "message.1"


async def test_new_channel_names_are_unique_and_prefixed(layer):
    names = {await layer.new_channel() for _ in range(200)}
    assert len(names) == 200
    assert all(name.startswith("specific..inmemory!") for name in names)
    custom = await layer.new_channel(prefix="chat")
    assert custom.startswith("chat.inmemory!")
    layer.require_valid_channel_name(custom)


@pytest.mark.parametrize("bad", ["", "has space", "é", "x" * 100, b"bytes", None, "a!b!c"])
async def test_invalid_channel_names_raise_type_error(layer, bad):
    with pytest.raises(TypeError):
        await layer.send(bad, {"type": "message.1"})
    with pytest.raises(TypeError):
        await layer.receive(bad)
    with pytest.raises(TypeError):
        await layer.group_add("test-group", bad)
    with pytest.raises(TypeError):
        await layer.group_discard("test-group", bad)


@pytest.mark.parametrize("bad", ["", "has space", "with!bang", "x" * 100, 42])
async def test_invalid_group_names_raise_type_error(layer, bad):
    with pytest.raises(TypeError):
        await layer.group_add(bad, "test-channel-1")
    with pytest.raises(TypeError):
        await layer.group_discard(bad, "test-channel-1")
    with pytest.raises(TypeError):
        await layer.group_send(bad, {"type": "message.1"})


async def test_messages_must_be_dicts_without_asgi_channel(layer):
    with pytest.raises(AssertionError):
        await layer.send("test-channel-1", ["not", "a", "dict"])
    with pytest.raises(AssertionError):
        await layer.send("test-channel-1", {"type": "x", "__asgi_channel__": "y"})
    with pytest.raises(AssertionError):
        await layer.group_send("test-group", "not a dict")


async def test_message_isolation_at_the_top_level(layer):
    """A receiver changing its message's keys affects neither the sender nor another receiver."""
    for channel in ("test-gr-chan-1", "test-gr-chan-2"):
        await layer.group_add("test-group", channel)
    sent = {"type": "message.1", "text": "hello"}
    await layer.group_send("test-group", sent)
    sent["text"] = "changed by the sender"
    first = await layer.receive("test-gr-chan-1")
    first["text"] = "changed by a receiver"
    first["extra"] = True
    second = await layer.receive("test-gr-chan-2")
    assert second == {"type": "message.1", "text": "hello"}
    assert first is not second


async def test_cancelled_waiting_receive_loses_nothing(layer):
    waiting = asyncio.create_task(layer.receive("test-channel-1"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await layer.send("test-channel-1", {"type": "message.1"})
    assert (await asyncio.wait_for(layer.receive("test-channel-1"), 1))["type"] == "message.1"


async def test_receive_cancelled_after_its_wake_up_loses_nothing(layer):
    """The send wakes the receiver, which is cancelled before it runs: the message stays queued."""
    woken = asyncio.create_task(layer.receive("test-channel-1"))
    other = asyncio.create_task(layer.receive("test-channel-1"))
    await asyncio.sleep(0)
    await layer.send("test-channel-1", {"type": "message.1"})
    woken.cancel()
    with pytest.raises(asyncio.CancelledError):
        await woken
    # The wake-up is handed on to the other waiting receiver.
    assert (await asyncio.wait_for(other, 1))["type"] == "message.1"


@both
def test_a_layer_outlives_event_loops(layer_cls):
    """The layer is cached process-wide; pytest-asyncio gives each test a new loop."""
    layer = layer_cls()

    async def first_loop():
        asyncio.create_task(layer.receive("test-channel-1"))  # cancelled when the loop ends
        await asyncio.sleep(0)
        await layer.send("test-channel-2", {"type": "message.1"})

    async def second_loop():
        receiver = asyncio.create_task(layer.receive("test-channel-1"))
        await asyncio.sleep(0)
        await layer.send("test-channel-1", {"type": "message.2"})
        return (await asyncio.wait_for(receiver, 1))["type"], (await layer.receive("test-channel-2"))["type"]

    asyncio.run(first_loop())
    assert asyncio.run(second_loop()) == ("message.2", "message.1")


@both
def test_layer_config_and_extensions(layer_cls):
    layer = layer_cls(expiry=5, group_expiry=10, capacity=7)
    assert (layer.expiry, layer.group_expiry, layer.capacity) == (5, 10, 7)
    assert layer.get_capacity("any-channel") == 7
    assert {"groups", "flush"} <= set(layer.extensions)
    assert isinstance(layer, InMemoryChannelLayer)


# -- the fast layer only ----------------------------------------------------------


async def test_group_overflow_sends_one_control_message_and_drops_until_drained(fast, caplog):
    await fast.group_add("room", "slow-chan")
    await fast.group_add("room", "fast-chan")
    with caplog.at_level(logging.WARNING, logger="realtime.layers"):
        for n in range(6):  # capacity 3: message 3 overflows, 3..5 are dropped
            await fast.group_send("room", {"type": "event", "n": n})
            assert (await fast.receive("fast-chan"))["n"] == n
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "slow-chan" in r.getMessage()]
    assert len(warnings) == 1  # once per episode, not per dropped message
    assert (fast.overflows, fast.channel_overflows["slow-chan"], fast.dropped) == (1, 1, 3)
    # Exactly one control message, queued past capacity, after what fitted.
    queued = [message for _, message in fast.channels["slow-chan"].queue]
    assert queued == [{"type": "event", "n": n} for n in range(3)] + [{"type": OVERFLOW}]

    # Still full (3 of 3 after one read): group messages are still dropped.
    assert (await fast.receive("slow-chan"))["n"] == 0
    await fast.group_send("room", {"type": "event", "n": 6})
    assert fast.dropped == 4 and fast.overflows == 1
    # Drained below capacity: delivery is normal again, no new episode.
    assert (await fast.receive("slow-chan"))["n"] == 1
    await fast.group_send("room", {"type": "event", "n": 7})
    rest = [(await fast.receive("slow-chan")).get("n") for _ in range(3)]
    assert rest == [2, None, 7]  # None: the OVERFLOW control message
    assert fast.overflows == 1 and fast.dropped == 4


async def test_a_member_behind_in_time_is_told_first_and_gets_nothing_more():
    layer = FastInMemoryChannelLayer(capacity=100, max_lag=0.05)
    await layer.group_add("room", "slow-chan")
    await layer.group_add("room", "fast-chan")
    for n in range(2):  # queued: far below capacity
        await layer.group_send("room", {"type": "event", "n": n})
        assert (await layer.receive("fast-chan"))["n"] == n  # this member reads at once
    await asyncio.sleep(0.2)  # the head of the queue is now older than max_lag
    for n in range(2, 5):
        await layer.group_send("room", {"type": "event", "n": n})
    # OVERFLOW first: the consumer closes after its send in flight, not after the backlog;
    # nothing more is queued for it (the client resumes by replay).
    queued = [message.get("n") for _, message in layer.channels["slow-chan"].queue]
    assert queued == [None, 0, 1]
    assert (layer.overflows, layer.channel_overflows["slow-chan"], layer.dropped) == (1, 1, 3)
    # A member that reads keeps receiving everything.
    assert [(await layer.receive("fast-chan"))["n"] for _ in range(3)] == [2, 3, 4]
    await layer.flush()


async def test_without_max_lag_an_old_queue_is_only_bounded_by_capacity(fast):
    await fast.group_add("room", "slow-chan")
    await fast.group_send("room", {"type": "event", "n": 0})
    await asyncio.sleep(0.1)
    await fast.group_send("room", {"type": "event", "n": 1})
    assert [message["n"] for _, message in fast.channels["slow-chan"].queue] == [0, 1]
    assert fast.overflows == 0


async def test_each_overflow_episode_is_counted(fast):
    await fast.group_add("room", "slow-chan")
    for episode in (1, 2):
        for _ in range(4):
            await fast.group_send("room", {"type": "event"})
        assert fast.overflows == episode and fast.channel_overflows["slow-chan"] == episode
        for _ in range(4):  # reads everything, OVERFLOW included
            await fast.receive("slow-chan")
    await fast.group_discard("room", "slow-chan")
    assert "slow-chan" not in fast.channel_overflows  # per-channel counts do not outlive membership
    assert fast.overflows == 2


async def test_send_to_a_full_channel_still_raises_during_an_overflow(fast):
    await fast.group_add("room", "slow-chan")
    for _ in range(4):
        await fast.group_send("room", {"type": "event"})
    with pytest.raises(ChannelFull):
        await fast.send("slow-chan", {"type": "direct"})


async def test_member_channels_keep_their_state_until_they_leave_their_last_group(fast):
    await fast.group_add("room", "chan")
    await fast.group_add("lobby", "chan")
    await fast.group_send("room", {"type": "event"})
    await fast.receive("chan")
    kept = fast.channels["chan"]  # empty but kept: the next group message needs it
    await fast.group_discard("room", "chan")
    assert fast.channels["chan"] is kept
    await fast.group_discard("lobby", "chan")
    assert "chan" not in fast.channels and "chan" not in fast._memberships


async def test_flush_resets_counters(fast):
    await fast.group_add("room", "slow-chan")
    for _ in range(5):
        await fast.group_send("room", {"type": "event"})
    await fast.flush()
    assert (fast.overflows, fast.dropped, dict(fast.channel_overflows)) == (0, 0, {})


async def test_flush_wakes_blocked_receivers_onto_the_new_state(fast):
    receiver = asyncio.create_task(fast.receive("test-channel-1"))
    await asyncio.sleep(0)
    await fast.flush()
    await asyncio.sleep(0)
    await fast.send("test-channel-1", {"type": "after.flush"})
    assert (await asyncio.wait_for(receiver, 1))["type"] == "after.flush"


async def test_nested_values_are_shared_not_deep_copied(fast, monkeypatch):
    def no_deepcopy(*args, **kwargs):
        raise AssertionError("deepcopy called")

    monkeypatch.setattr("copy.deepcopy", no_deepcopy)
    nested = {"items": [1, 2]}
    await fast.group_add("room", "chan-a")
    await fast.group_add("room", "chan-b")
    await fast.group_send("room", {"type": "event", "payload": nested})
    a, b = await fast.receive("chan-a"), await fast.receive("chan-b")
    assert a is not b and a["payload"] is b["payload"] is nested  # documented: do not mutate


class ScanCountingDict(dict):
    """A dict that counts whole-collection iterations (the stock layer's per-call scans)."""

    scans = 0

    def __iter__(self):
        ScanCountingDict.scans += 1
        return super().__iter__()

    def items(self):
        ScanCountingDict.scans += 1
        return super().items()

    def values(self):
        ScanCountingDict.scans += 1
        return super().values()


def count_scans_and_forbid_tasks(layer, monkeypatch) -> None:
    """From now on, count full scans of the layer's channels and groups, and fail on any task started."""
    layer.channels = ScanCountingDict(layer.channels)
    layer.groups = ScanCountingDict(layer.groups)
    ScanCountingDict.scans = 0

    def no_tasks(*args, **kwargs):
        raise AssertionError("a task was started")

    monkeypatch.setattr(asyncio, "create_task", no_tasks)
    monkeypatch.setattr(asyncio, "ensure_future", no_tasks)


async def test_fan_out_never_scans_unrelated_channels_or_groups(monkeypatch):
    """Structural O(1): group_send/receive touch only the group's members, no task per member."""
    layer = FastInMemoryChannelLayer(capacity=10)
    members = [f"member-{i}" for i in range(1000)]
    for i in range(3000):  # unrelated traffic the stock layer would scan on every call
        await layer.send(f"bystander-{i}", {"type": "pending"})
        await layer.group_add(f"other-{i % 300}", f"bystander-{i}")
    for channel in members:
        await layer.group_add("room", channel)
    assert isinstance(layer.channels, dict) and isinstance(layer.groups, dict)
    assert set(layer.groups["room"]) == set(members)

    count_scans_and_forbid_tasks(layer, monkeypatch)
    for n in range(3):
        await layer.group_send("room", {"type": "event", "n": n})
        for channel in members:
            assert (await layer.receive(channel))["n"] == n
    assert ScanCountingDict.scans == 0
    assert all(len(layer.channels[f"bystander-{i}"].queue) == 1 for i in range(3000))


async def test_channel_capacity_globs_apply():
    layer = FastInMemoryChannelLayer(capacity=3, channel_capacity={"tiny.*": 1})
    assert layer.get_capacity("tiny.chan") == 1 and layer.get_capacity("big.chan") == 3
    await layer.send("tiny.chan", {"type": "event"})
    with pytest.raises(ChannelFull):
        await layer.send("tiny.chan", {"type": "event"})


def test_a_receiver_abandoned_on_another_loop_does_not_swallow_the_wake_up():
    """A receive left pending on a loop that is not running (nor closed) does not starve this loop's."""
    layer = FastInMemoryChannelLayer()
    old_loop = asyncio.new_event_loop()
    try:
        abandoned = old_loop.create_task(layer.receive("test-channel-1"))
        old_loop.run_until_complete(asyncio.sleep(0))

        async def new_loop():
            receiver = asyncio.create_task(layer.receive("test-channel-1"))
            await asyncio.sleep(0)
            await layer.send("test-channel-1", {"type": "message.1"})
            return await asyncio.wait_for(receiver, 1)

        result = {}
        # On its own thread, as when another loop really runs elsewhere.
        thread = threading.Thread(target=lambda: result.update(asyncio.run(new_loop())))
        thread.start()
        thread.join(5)
        assert result == {"type": "message.1"}
        abandoned.cancel()
        old_loop.run_until_complete(asyncio.gather(abandoned, return_exceptions=True))
    finally:
        old_loop.close()


# -- direct delivery: sinks (fast layer only) ----------------------------------------


class Sink:
    """A sink that records what it is offered and takes it unless told to decline."""

    def __init__(self, take: bool = True) -> None:
        self.take = take
        self.offered: list[dict] = []

    def __call__(self, message: dict) -> bool:
        self.offered.append(message)
        return self.take


async def test_a_sink_takes_messages_on_the_senders_stack(fast):
    sink = Sink()
    fast.attach("chan", sink)
    await fast.group_add("room", "chan")
    sent = {"type": "event", "n": 1}
    await fast.group_send("room", sent)
    await fast.send("chan", {"type": "direct"})
    assert sink.offered[0] is sent  # the sender's own dict: no copy for a sink
    assert [m["type"] for m in sink.offered] == ["event", "direct"]
    assert fast.receive_nowait("chan") is None  # nothing was queued


async def test_a_declined_message_queues_and_later_ones_wait_behind_it(fast):
    sink = Sink(take=False)
    fast.attach("chan", sink)
    await fast.group_add("room", "chan")
    await fast.group_send("room", {"type": "event", "n": 1})
    sink.take = True
    await fast.group_send("room", {"type": "event", "n": 2})
    assert [m["n"] for m in sink.offered] == [1]  # not offered while an older one is queued
    assert [fast.receive_nowait("chan")["n"] for _ in range(2)] == [1, 2]
    await fast.group_send("room", {"type": "event", "n": 3})
    assert [m["n"] for m in sink.offered] == [1, 3]  # drained: offered again


async def test_a_declining_sink_overflows_like_a_slow_reader(fast):
    fast.attach("chan", Sink(take=False))
    await fast.group_add("room", "chan")
    for n in range(5):  # capacity 3
        await fast.group_send("room", {"type": "event", "n": n})
    assert (fast.overflows, fast.dropped) == (1, 2)
    queued = [fast.receive_nowait("chan") for _ in range(4)]
    assert queued == [{"type": "event", "n": n} for n in range(3)] + [{"type": OVERFLOW}]


async def test_a_failing_sink_leaves_the_message_queued(fast, caplog):
    def broken(message):
        raise RuntimeError("boom")

    fast.attach("chan", broken)
    with caplog.at_level(logging.ERROR, logger="realtime.layers"):
        await fast.send("chan", {"type": "event"})
    assert fast.receive_nowait("chan") == {"type": "event"}
    assert "sink" in caplog.text


async def test_detach_forgets_the_channel_and_what_it_left_queued(fast):
    fast.attach("chan", Sink(take=False))
    await fast.send("chan", {"type": "event"})
    fast.detach("chan")
    assert "chan" not in fast.channels
    assert fast.receive_nowait("chan") is None


async def test_an_attached_channel_is_kept_while_idle_and_through_flush(fast):
    sink = Sink()
    fast.attach("chan", sink)
    assert "chan" in fast.channels  # not forgotten for being empty: its sink is its reader
    await fast.flush()
    await fast.send("chan", {"type": "event"})
    assert [m["type"] for m in sink.offered] == ["event"]


async def test_fan_out_to_sinks_starts_no_task_and_scans_nothing(monkeypatch):
    layer = FastInMemoryChannelLayer(capacity=10)
    sinks = {f"member-{i}": Sink() for i in range(1000)}
    for channel, sink in sinks.items():
        layer.attach(channel, sink)
        await layer.group_add("room", channel)
    for i in range(300):
        await layer.group_add(f"other-{i}", f"bystander-{i}")
    await layer.group_send("nobody", {"type": "event"})  # the periodic sweep runs now, not below
    count_scans_and_forbid_tasks(layer, monkeypatch)
    await layer.group_send("room", {"type": "event"})
    assert ScanCountingDict.scans == 0
    assert all(len(sink.offered) == 1 for sink in sinks.values())
