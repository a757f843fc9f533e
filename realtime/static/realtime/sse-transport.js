// Server-Sent Events: the receive-only fallback when WebSockets cannot get
// through (a proxy that strips Upgrade, a firewall). Same shape as
// WebSocketTransport (ws-transport.js), plus the event names to listen to:
//   new SSETransport({ url, events, onOpen(), onEvent(event), onClose({ code, reason, wasOpen }) })
//   .name  .canSend  .reportsCloseCodes  .connect()  .send(frame) -> false  .close()
//
// It cannot send: an app that needs to (a message to post) posts over its
// own HTTP API while LiveClient.canSend is false. Nor does it see close
// codes or HTTP statuses (EventSource hides both): every end of the stream is
// reported as 1006, and LiveClient asks the server whether the session is
// the reason.
(function (Realtime) {
  "use strict";

  // What onClose reports when the stream drops: the browser gives no code.
  const STREAM_LOST = 1006;

  class SSETransport {
    /**
     * ``url``: the stream, resume parameters included. ``events``: the event
     * names the stream carries (``event: <name>`` lines); EventSource only
     * reports named events to listeners registered by name.
     */
    constructor({ url, events = [], onOpen, onEvent, onClose }) {
      this.name = "SSE";
      this.canSend = false;
      this.reportsCloseCodes = false;
      this.url = url;
      this.events = events;
      this.onOpen = onOpen;
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.source = null;
      this.wasOpen = false;
    }

    connect() {
      // EventSource would reconnect by itself with Last-Event-ID; LiveClient
      // owns reconnecting (backoff, fallback, catch-up), so the first error ends it.
      const source = new EventSource(this.url);
      this.source = source;
      source.addEventListener("open", () => {
        if (source !== this.source) return;
        this.wasOpen = true;
        this.onOpen();
      });
      // "error" is both EventSource's own connection error (no data) and,
      // with data, a server event named "error": listen to it in any case.
      const names = new Set([...this.events, "error"]);
      for (const name of names) {
        source.addEventListener(name, (e) => {
          if (source !== this.source) return;
          if (name === "error" && !e.data) return this.finish();
          this.receive(e.data);
        });
      }
    }

    receive(data) {
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      this.onEvent(event);
    }

    /** A stream cannot carry client frames. */
    send() {
      return false;
    }

    /** Close on purpose: no onClose callback follows. */
    close() {
      const source = this.source;
      this.source = null;
      if (source) source.close();
    }

    finish() {
      if (!this.source) return;
      this.close();
      this.onClose({ code: STREAM_LOST, reason: "stream lost", wasOpen: this.wasOpen });
    }
  }

  Realtime.SSETransport = SSETransport;
})((window.Realtime = window.Realtime || {}));
