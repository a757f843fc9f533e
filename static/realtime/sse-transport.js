// Server-Sent Events for receiving, the HTTP API for sending: the fallback
// when WebSockets cannot get through (a proxy that strips Upgrade, a
// firewall). Same shape as WebSocketTransport:
//   new SSETransport({ room, onOpen(), onEvent(event), onClose({ code, reason, wasOpen }) })
//   .name  .connect(afterId)  .send(frame) -> bool  .close()
(function (Realtime) {
  "use strict";

  // Event names the server sends (CONTRACT.md sections 3 and 4). EventSource
  // only reports named events to listeners registered by name.
  const EVENT_TYPES = [
    "hello", "message", "presence", "presence_diff", "typing",
    "message_deleted", "announcement", "error", "upload_progress",
  ];
  // What onClose reports when the stream drops: the browser gives no code.
  const STREAM_LOST = 1006;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  class SSETransport {
    constructor({ room, onOpen, onEvent, onClose }) {
      this.name = "SSE";
      this.room = room;
      this.onOpen = onOpen;
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.source = null;
      this.wasOpen = false;
    }

    connect(afterId) {
      const room = encodeURIComponent(this.room);
      // EventSource would reconnect by itself with Last-Event-ID; RoomClient
      // owns reconnecting (backoff, fallback), so the first error ends it.
      const source = new EventSource(`/sse/rooms/${room}/?after=${afterId}`);
      this.source = source;
      source.addEventListener("open", () => {
        if (source !== this.source) return;
        this.wasOpen = true;
        this.onOpen();
      });
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (e) => {
          // "error" is also EventSource's own connection error, which has no data.
          if (source !== this.source) return;
          if (type === "error" && !e.data) return this.finish();
          this.receive(e.data);
        });
      }
    }

    receive(data) {
      try {
        this.onEvent(JSON.parse(data));
      } catch {
        // the server only sends JSON; ignore anything else
      }
    }

    /** Send a client frame over HTTP; only messages have an HTTP equivalent. */
    send(frame) {
      if (!this.source || !this.wasOpen) return false;
      if (frame.type !== "message") return true; // typing and ping need no HTTP call
      this.post(frame.text);
      return true;
    }

    async post(text) {
      const room = encodeURIComponent(this.room);
      try {
        const response = await fetch(`/api/rooms/${room}/messages`, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ text }),
        });
        // The message itself arrives over the stream, like everyone else's.
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          this.onEvent({ type: "error", code: body.error || String(response.status), detail: body.detail });
        }
      } catch {
        this.onEvent({ type: "error", code: "network", detail: "Not sent: the network is down." });
      }
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
