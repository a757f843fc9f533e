// Which transport the next connection attempt uses.
//
// WebSocket first. After repeated failed handshakes or quick drops, fall
// back to SSE (receive) + HTTP (send), and probe WebSocket again later:
// a network that blocked it may have changed. ?transport=sse forces SSE
// (for testing, and for users behind hostile proxies); ?transport=websocket
// forces WebSocket.
(function (Realtime) {
  "use strict";

  const FAILURES_BEFORE_FALLBACK = 2; // failed handshakes or drops within QUICK_DROP_MS
  const QUICK_DROP_MS = 5000;
  const RETRY_WEBSOCKET_AFTER_MS = 60000;

  class TransportPolicy {
    constructor({ forced = null, retryWebSocketAfterMs = RETRY_WEBSOCKET_AFTER_MS } = {}) {
      this.forced = forced; // "sse", "websocket" or null
      this.retryWebSocketAfterMs = retryWebSocketAfterMs;
      this.failures = 0;
      this.onSse = forced === "sse";
      this.probeTimer = null;
      this.onProbeDue = () => {};
    }

    static fromLocation() {
      const forced = new URLSearchParams(location.search).get("transport");
      return new TransportPolicy({ forced: ["sse", "websocket"].includes(forced) ? forced : null });
    }

    /** Return a new transport for one attempt, watching how it fares. */
    make(callbacks) {
      const useSse = this.forced ? this.forced === "sse" : this.onSse;
      const Transport = useSse ? Realtime.SSETransport : Realtime.WebSocketTransport;
      let openedAt = 0;
      return new Transport({
        ...callbacks,
        onOpen: () => {
          openedAt = Date.now();
          if (useSse && !this.forced) this.scheduleProbe();
          callbacks.onOpen();
        },
        onClose: (info) => {
          if (!useSse) this.noteWebSocket(info.wasOpen && Date.now() - openedAt > QUICK_DROP_MS);
          callbacks.onClose(info);
        },
      });
    }

    noteWebSocket(healthy) {
      this.failures = healthy ? 0 : this.failures + 1;
      if (this.failures >= FAILURES_BEFORE_FALLBACK) this.onSse = true;
    }

    /** While on the SSE fallback, try WebSocket again after a while. */
    scheduleProbe() {
      clearTimeout(this.probeTimer);
      this.probeTimer = setTimeout(() => {
        this.onSse = false;
        this.failures = FAILURES_BEFORE_FALLBACK - 1; // one more failure returns to SSE
        this.onProbeDue();
      }, this.retryWebSocketAfterMs);
    }
  }

  Realtime.TransportPolicy = TransportPolicy;
})((window.Realtime = window.Realtime || {}));
