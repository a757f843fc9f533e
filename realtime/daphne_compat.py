"""Let Daphne send the registered server close codes 1011, 1012 and 1013.

Daphne hands ``websocket.close`` to autobahn's ``sendClose``, which accepts
only 1000 and 3000-4999 from applications. 1011 (the server failed the
connection: the database was unavailable), 1012 (service restart, sent on
SIGTERM) and 1013 (try again later, sent to a socket that fell behind) are
IANA-registered codes meant for servers, and the contract uses them; uvicorn
sends them as is. The patch routes just those three to autobahn's lower-level
``sendCloseFrame``. Read from daphne 4.2.3 / autobahn 25.x;
tests/realtime/test_daphne_compat.py fails loudly if either changes.
"""

from __future__ import annotations

from .codes import SERVER_ERROR, SERVICE_RESTART, TRY_AGAIN_LATER

SERVER_CODES = frozenset({SERVER_ERROR, SERVICE_RESTART, TRY_AGAIN_LATER})


def patch_daphne() -> None:
    """Install the close-code patch on Daphne's WebSocket protocol, once."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # Daphne not installed: nothing to patch
        return
    if getattr(WebSocketProtocol.serverClose, "_realtime_patched", False):
        return
    original = WebSocketProtocol.serverClose

    def serverClose(self, code=None):  # noqa: N802 - Daphne's method name
        if code in SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original(self, code=code)

    serverClose._realtime_patched = True
    WebSocketProtocol.serverClose = serverClose
