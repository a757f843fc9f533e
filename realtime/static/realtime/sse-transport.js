// Server-Sent Events: the receive-only fallback when WebSockets cannot get
// through (a proxy that strips Upgrade, a firewall). Same shape as
// WebSocketTransport (ws-transport.js), plus the event names to listen to
// and a URL to probe:
//   new SSETransport({ url, events, probeUrl, onOpen(), onEvent(event), onClose({ code, reason, wasOpen }) })
//   .name  .canSend  .reportsCloseCodes  .connect()  .send(frame) -> false  .close()
//
// It cannot send: an app that needs to (a client's writes) posts over its
// own HTTP API while LiveClient.canSend is false. Nor does it see close
// codes or HTTP statuses (EventSource hides both): every end of the stream is
// reported as 1006, and LiveClient asks the server whether the session is
// the reason.
//
// A network gone without a FIN leaves the stream "open" for minutes, and the
// server's keep-alive comments are invisible to EventSource's listeners, so a
// silent stream may be idle or dead. After SILENT_PROBE_MS without an event
// the transport asks probeUrl (a cheap GET without side effects); any answer
// within PROBE_WITHIN_MS means the network is there and the stream merely
// idle, no answer means it stalled: the stream is given up (1006) and
// LiveClient reconnects and catches up. The watch starts with connect(), as a
// stream opened into a vanished network never opens. A stall is reported
// within SILENT_PROBE_MS + CHECK_EVERY_MS + PROBE_WITHIN_MS (4 s) of the
// last event; a busy stream never probes, an idle one about every 2.5 s.
(function (Realtime) {
  "use strict";

  // What onClose reports when the stream drops: the browser gives no code.
  const STREAM_LOST = 1006;
  const CHECK_EVERY_MS = 500;
  const SILENT_PROBE_MS = 2000; // silence before a probe
  const PROBE_WITHIN_MS = 1500; // then the probe's whole answer, or the stream counts as stalled

  class SSETransport {
    /**
     * ``url``: the stream, resume parameters included. ``events``: the event
     * names the stream carries (``event: <name>`` lines); EventSource only
     * reports named events to listeners registered by name. ``probeUrl``:
     * asked while the stream is silent (null: never, a stall goes unnoticed).
     */
    constructor({
      url,
      events = [],
      probeUrl = null,
      onOpen,
      onEvent,
      onClose,
      checkEveryMs = CHECK_EVERY_MS,
      silentProbeMs = SILENT_PROBE_MS,
      probeWithinMs = PROBE_WITHIN_MS,
    }) {
      this.name = "SSE";
      this.canSend = false;
      this.reportsCloseCodes = false;
      this.url = url;
      this.events = events;
      this.probeUrl = probeUrl;
      this.onOpen = onOpen;
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.checkEveryMs = checkEveryMs;
      this.silentProbeMs = silentProbeMs;
      this.probeWithinMs = probeWithinMs;
      this.source = null;
      this.wasOpen = false;
      this.watchTimer = null;
      this.heard = false; // an event arrived since the last check
      this.silentMs = 0; // how long nothing has arrived, counted in checks
      this.probing = false;
    }

    connect() {
      // EventSource would reconnect by itself with Last-Event-ID; LiveClient
      // owns reconnecting (backoff, fallback, catch-up), so the first error ends it.
      const source = new EventSource(this.url);
      this.source = source;
      source.addEventListener("open", () => {
        if (source !== this.source) return;
        this.wasOpen = true;
        this.heard = true;
        this.onOpen();
      });
      // "error" is both EventSource's own connection error (no data) and,
      // with data, a server event named "error": listen to it in any case.
      const names = new Set([...this.events, "error"]);
      for (const name of names) {
        source.addEventListener(name, (e) => {
          if (source !== this.source) return;
          if (name === "error" && !e.data) return this.finish("stream lost");
          this.receive(e.data);
        });
      }
      if (this.probeUrl) this.watchTimer = setInterval(() => this.checkSilence(), this.checkEveryMs);
    }

    receive(data) {
      this.heard = true; // any event proves the stream alive
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      this.onEvent(event);
    }

    /** Every CHECK_EVERY_MS: probe the server once the stream has been silent for a while. */
    checkSilence() {
      if (this.heard) {
        this.heard = false;
        this.silentMs = 0;
        return;
      }
      this.silentMs += this.checkEveryMs;
      if (!this.probing && this.silentMs >= this.silentProbeMs) this.probe();
    }

    /** Ask probeUrl; give the stream up unless the whole answer arrives in time. */
    probe() {
      const source = this.source;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), this.probeWithinMs);
      this.probing = true;
      // Read the body too: an answer cut off half way is no answer, and a read body frees the connection.
      fetch(this.probeUrl, { credentials: "same-origin", cache: "no-store", signal: abort.signal })
        .then((response) => response.arrayBuffer())
        .then(
          () => true,
          () => false,
        )
        .then((answered) => {
          clearTimeout(timer);
          if (source !== this.source) return; // closed meanwhile: nothing to decide
          this.probing = false;
          if (answered) this.silentMs = 0; // idle, not dead: wait a full silence again
          else this.finish("stream stalled");
        });
    }

    /** A stream cannot carry client frames. */
    send() {
      return false;
    }

    /** Close on purpose: no onClose callback follows. */
    close() {
      const source = this.source;
      this.source = null;
      clearInterval(this.watchTimer);
      this.watchTimer = null;
      if (source) source.close();
    }

    finish(reason) {
      if (!this.source) return;
      this.close();
      this.onClose({ code: STREAM_LOST, reason, wasOpen: this.wasOpen });
    }
  }

  Realtime.SSETransport = SSETransport;
})((window.Realtime = window.Realtime || {}));
