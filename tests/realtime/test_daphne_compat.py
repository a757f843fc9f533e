"""The Daphne close-code patch still fits the Daphne and autobahn installed."""

from __future__ import annotations

import inspect

import daphne
from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol


def test_daphne_still_routes_close_through_server_close():
    """Fails loudly on an upgrade: re-read realtime/daphne_compat.py against the new Daphne."""
    assert daphne.__version__.startswith("4."), "realtime/daphne_compat.py was written against Daphne 4"
    assert "self.serverClose(code=" in inspect.getsource(WebSocketProtocol.handle_reply)
    assert WebSocketProtocol.serverClose._realtime_patched
    assert "isReply" in inspect.signature(AutobahnProtocol.sendCloseFrame).parameters


def test_patched_close_sends_server_codes_as_frames_and_others_as_before():
    sent = []

    class Probe:
        def sendCloseFrame(self, code, isReply):  # noqa: N802, N803
            sent.append(("frame", code))

        def sendClose(self, code=None, reason=None):  # noqa: N802
            sent.append(("close", code))

    for code in (1011, 1012, 1013, 4401, None):
        WebSocketProtocol.serverClose(Probe(), code=code)
    assert sent == [("frame", 1011), ("frame", 1012), ("frame", 1013), ("close", 4401), ("close", 1000)]
