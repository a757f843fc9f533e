// One WebSocket connection to one topic, with a heartbeat that notices a stall.
//
// A network gone without a FIN (Wi-Fi dropped, a NAT forgot the flow) leaves
// the socket "open" for minutes. So every half second the transport asks whether
// anything arrived since the last check; after SILENT_PING_MS of silence it
// pings ({"type": "ping"} -> pong), and after PONG_WITHIN_MS more with no
// traffic at all it reports the socket dead (code 4000). A busy topic never
// pings, a quiet one about every 2 s, and a message costs one assignment,
// as a pong check would. A stall is reported within SILENT_PING_MS +
// PONG_WITHIN_MS + CHECK_EVERY_MS (4 s) of the last traffic.
//
// A transport is deliberately dumb: connect once, deliver events, report the
// close. Reconnecting, catch-up and status live in LiveClient (live-client.js),
// so SSETransport (sse-transport.js) only has to implement the same shape:
//   new Transport({ url, onOpen(), onEvent(event), onClose({ code, reason, wasOpen }) })
//   .name  .canSend  .reportsCloseCodes  .connect()  .send(frame) -> bool  .close()
// ``url`` is absolute (ws: or wss:), resume parameters included.
(function (Realtime) {
  "use strict";

  const CHECK_EVERY_MS = 500;
  const SILENT_PING_MS = 1500; // silence before a ping
  const PONG_WITHIN_MS = 2000; // then silence before the socket counts as dead
  // Our own code for "the heartbeat failed"; 4000-4999 is the application range.
  const HEARTBEAT_TIMEOUT = 4000;

  class WebSocketTransport {
    constructor({
      url,
      onOpen,
      onEvent,
      onClose,
      checkEveryMs = CHECK_EVERY_MS,
      silentPingMs = SILENT_PING_MS,
      pongWithinMs = PONG_WITHIN_MS,
    }) {
      this.name = "WebSocket";
      this.canSend = true; // client frames go up the same socket
      this.reportsCloseCodes = true; // 4401, 4403 and friends arrive as close codes
      this.url = url;
      this.onOpen = onOpen;
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.checkEveryMs = checkEveryMs;
      this.silentPingMs = silentPingMs;
      this.pongWithinMs = pongWithinMs;
      this.socket = null;
      this.wasOpen = false;
      this.heartbeatTimer = null;
      this.heard = false; // anything arrived since the last check
      this.silentMs = 0; // how long nothing has arrived, counted in checks
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
      this.heard = true; // any traffic proves the socket alive, a pong or an event
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
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
      this.heard = true;
      this.silentMs = 0;
      this.heartbeatTimer = setInterval(() => this.checkHeartbeat(), this.checkEveryMs);
    }

    /** Every CHECK_EVERY_MS: ping after some silence, give the socket up after more. */
    checkHeartbeat() {
      if (this.heard) {
        this.heard = false;
        this.silentMs = 0;
        return;
      }
      const before = this.silentMs;
      this.silentMs += this.checkEveryMs;
      if (before < this.silentPingMs && this.silentMs >= this.silentPingMs) this.send({ type: "ping" });
      if (this.silentMs >= this.silentPingMs + this.pongWithinMs) this.heartbeatFailed();
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
      clearInterval(this.heartbeatTimer);
      return socket;
    }
  }

  WebSocketTransport.HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT;
  Realtime.WebSocketTransport = WebSocketTransport;
})((window.Realtime = window.Realtime || {}));
