"""realtime.delivery: an ASGI send run eagerly, finished in a task only when it must wait."""

from __future__ import annotations

import asyncio

import pytest

from realtime.eager import send_eagerly


class Transport:
    """An ASGI send like uvicorn's: it waits only while the transport is paused."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.written: list[dict] = []

    async def send(self, message: dict) -> None:
        await self.writable.wait()
        if message.get("fail"):
            raise ConnectionResetError("the client is gone")
        self.written.append(message)


async def test_a_send_that_need_not_wait_completes_on_the_spot():
    transport = Transport()
    assert send_eagerly(transport.send, {"n": 1}) is None
    assert transport.written == [{"n": 1}]


async def test_a_send_that_must_wait_is_finished_by_awaiting_the_rest():
    transport = Transport()
    transport.writable.clear()
    rest = send_eagerly(transport.send, {"n": 1})
    assert rest is not None and transport.written == []
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    transport.writable.set()
    await task
    assert transport.written == [{"n": 1}]


async def test_errors_come_out_whether_the_send_waited_or_not():
    transport = Transport()
    with pytest.raises(ConnectionResetError):
        send_eagerly(transport.send, {"fail": True})
    transport.writable.clear()
    rest = send_eagerly(transport.send, {"fail": True})
    transport.writable.set()
    with pytest.raises(ConnectionResetError):
        await rest


async def test_cancelling_the_rest_cancels_the_waiting_send():
    transport = Transport()
    transport.writable.clear()
    task = asyncio.ensure_future(send_eagerly(transport.send, {"n": 1}))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    transport.writable.set()
    await asyncio.sleep(0)
    assert transport.written == []
