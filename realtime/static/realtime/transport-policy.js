// Which transport the next connection attempt uses.
//
// WebSocket first. After repeated failed handshakes or quick drops, fall
// back to Server-Sent Events, and probe WebSocket again later: a network
// that blocked it may have changed. ?transport=sse in the page's URL forces
// SSE (for testing, and for users behind hostile proxies);
// ?transport=websocket forces WebSocket.
(function (Realtime) {
  "use strict";

  const FAILURES_BEFORE_FALLBACK = 2; // failed handshakes or drops within QUICK_DROP_MS
  const QUICK_DROP_MS = 5000;
  const RETRY_WEBSOCKET_AFTER_MS = 60000;
  const TRANSPORTS = ["sse", "websocket"];

  class TransportPolicy {
    constructor({ forced = null, retryWebSocketAfterMs = RETRY_WEBSOCKET_AFTER_MS } = {}) {
      this.forced = TRANSPORTS.includes(forced) ? forced : null; // "sse", "websocket" or null
      this.retryWebSocketAfterMs = retryWebSocketAfterMs;
      this.failures = 0;
      this.onSse = this.forced === "sse";
      this.probeTimer = null;
      this.onProbeDue = () => {};
    }

    /** Return the transport the page's ?transport= forces, or null. */
    static forcedByLocation() {
      const forced = new URLSearchParams(location.search).get("transport");
      return TRANSPORTS.includes(forced) ? forced : null;
    }

    static fromLocation() {
      return new TransportPolicy({ forced: TransportPolicy.forcedByLocation() });
    }

    /**
     * Return a new transport for one attempt, watching how it fares.
     * ``websocket`` and ``sse`` are the options of each transport (its url,
     * the SSE event names); the callbacks are shared.
     */
    make({ websocket, sse, ...callbacks }) {
      const useSse = this.forced ? this.forced === "sse" : this.onSse;
      const Transport = useSse ? Realtime.SSETransport : Realtime.WebSocketTransport;
      let openedAt = 0;
      return new Transport({
        ...(useSse ? sse : websocket),
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
