// One WebSocket connection to one topic, with a ping/pong heartbeat.
//
// A transport is deliberately dumb: connect once, deliver events, report the
// close. Reconnecting, catch-up and status live in LiveClient (live-client.js),
// so SSETransport (sse-transport.js) only has to implement the same shape:
//   new Transport({ url, onOpen(), onEvent(event), onClose({ code, reason, wasOpen }) })
//   .name  .canSend  .reportsCloseCodes  .connect()  .send(frame) -> bool  .close()
// ``url`` is absolute (ws: or wss:), resume parameters included.
(function (Realtime) {
  "use strict";

  const PING_EVERY_MS = 25000;
  const PONG_WITHIN_MS = 10000;
  // Our own code for "the heartbeat failed"; 4000-4999 is the application range.
  const HEARTBEAT_TIMEOUT = 4000;

  class WebSocketTransport {
    constructor({ url, onOpen, onEvent, onClose, pingEveryMs = PING_EVERY_MS, pongWithinMs = PONG_WITHIN_MS }) {
      this.name = "WebSocket";
      this.canSend = true; // client frames go up the same socket
      this.reportsCloseCodes = true; // 4401, 4403 and friends arrive as close codes
      this.url = url;
      this.onOpen = onOpen;
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.pingEveryMs = pingEveryMs;
      this.pongWithinMs = pongWithinMs;
      this.socket = null;
      this.wasOpen = false;
      this.pingTimer = null;
      this.pongTimer = null;
    }

    connect() {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      socket.addEventListener("open", () => {
        if (socket !== this.socket) return;
        this.wasOpen = true;
        this.startHeartbeat();
        this.onOpen();
      });
      // Events of a socket we already gave up on (heartbeat) are ignored.
      socket.addEventListener("message", (e) => socket === this.socket && this.receive(e.data));
      // "error" is always followed by "close", so "close" alone decides.
      socket.addEventListener("close", (e) => socket === this.socket && this.finish(e.code, e.reason));
    }

    receive(data) {
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      if (event.type === "pong") this.clearPongTimer();
      this.onEvent(event);
    }

    send(frame) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(JSON.stringify(frame));
      return true;
    }

    /** Close on purpose: no onClose callback follows. */
    close() {
      const socket = this.detach();
      if (socket) socket.close(1000, "client closed");
    }

    startHeartbeat() {
      this.pingTimer = setInterval(() => {
        if (!this.send({ type: "ping" }) || this.pongTimer) return;
        this.pongTimer = setTimeout(() => this.heartbeatFailed(), this.pongWithinMs);
      }, this.pingEveryMs);
    }

    clearPongTimer() {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }

    heartbeatFailed() {
      // A half-open socket may take minutes to report "close" on its own,
      // so report it now and let the socket die in the background.
      const socket = this.detach();
      if (!socket) return;
      try {
        socket.close(HEARTBEAT_TIMEOUT, "no pong");
      } catch {
        // closing a dead socket may throw in some browsers; it is gone anyway
      }
      this.onClose({ code: HEARTBEAT_TIMEOUT, reason: "no pong", wasOpen: true });
    }

    finish(code, reason) {
      this.detach();
      this.onClose({ code, reason, wasOpen: this.wasOpen });
    }

    /** Stop timers and forget the socket; return it, or null if already detached. */
    detach() {
      const socket = this.socket;
      this.socket = null;
      clearInterval(this.pingTimer);
      this.clearPongTimer();
      return socket;
    }
  }

  WebSocketTransport.HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT;
  Realtime.WebSocketTransport = WebSocketTransport;
})((window.Realtime = window.Realtime || {}));
