// RoomClient: a chat room's state (messages by id, who is online, who is
// typing) on top of a LiveClient (realtime/live-client.js), which owns the
// connection: WebSocket or SSE, reconnecting with backoff, resuming after the
// newest message id we hold, the fatal close codes, the status line.
//
// Sending: over a WebSocket, frames go up the socket; on the SSE fallback
// (LiveClient.canSend is false) a message is posted to the room's HTTP API
// and comes back over the stream like everyone else's; typing is skipped.
(function (Realtime) {
  "use strict";

  const TYPING_SHOW_MS = 3000;
  const TYPING_SEND_EVERY_MS = 2000;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  class RoomClient {
    /**
     * ``config``: { room, username, history } from the page. ``view``: a RoomView.
     * ``on``: extra server-event handlers, a { type: handler(event) } map or a
     * list of them (extensions such as uploads' upload_progress); a handler
     * for a type the room handles too runs after the room's own.
     * ``live``: more LiveClient options (transport, backoff, ...).
     */
    constructor({ config, view, on = [], live = {} }) {
      this.room = config.room;
      this.username = config.username;
      this.view = view;
      this.messages = new Map(); // id -> message event
      this.deleted = new Set(); // ids deleted while we watched; never shown again
      this.maxId = 0; // the highest message id seen: what a reconnect resumes after
      this.users = new Set();
      this.typingTimers = new Map(); // username -> timer that hides "is typing"
      this.lastTypingSent = 0;
      for (const event of config.history || []) this.addMessage(event);

      const slug = encodeURIComponent(this.room);
      this.apiUrl = `/api/rooms/${slug}/messages`;
      this.connection = new Realtime.LiveClient({
        wsUrl: `/ws/rooms/${slug}/`,
        sseUrl: `/sse/rooms/${slug}/`,
        on: chain(this.handlers(), ...[].concat(on)),
        // Resume after the newest message we hold; 0 replays the whole room,
        // which is harmless because messages are de-duplicated by id.
        lastId: () => this.maxId,
        onLive: () => this.view.setPresenceStale(false),
        onDown: () => {
          this.clearTyping();
          this.view.setPresenceStale(true);
        },
        onEnd: (reason) => this.view.showSessionEnded(reason),
        ...live,
      });
    }

    connect() {
      this.connection.connect();
    }

    // -- client commands --------------------------------------------------

    /** Send a message; return false when it could not be sent (not connected). */
    sendMessage(text) {
      const connection = this.connection;
      if (!connection.live) return false;
      if (connection.canSend) {
        if (!connection.send({ type: "message", text })) return false;
      } else {
        this.post(text);
      }
      // Our message clears "is typing" for the others, so the next keystroke may say it again.
      this.lastTypingSent = 0;
      return true;
    }

    /** Tell the room we are typing, at most once per TYPING_SEND_EVERY_MS (never over SSE). */
    noteTyping() {
      const now = Date.now();
      if (!this.connection.live || now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
      if (!this.connection.canSend || this.connection.send({ type: "typing" })) this.lastTypingSent = now;
    }

    /** Post a message over HTTP (the SSE fallback); the message itself arrives over the stream. */
    async post(text) {
      try {
        const response = await fetch(this.apiUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ text }),
        });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          this.view.showError(body.detail || body.error || String(response.status));
        }
      } catch {
        this.view.showError("Not sent: the network is down.");
      }
    }

    // -- server events ----------------------------------------------------

    handlers() {
      return {
        hello: (event) => {
          if (event.user && event.user.username) this.username = event.user.username;
        },
        message: (event) => this.addMessage(event),
        presence: (event) => this.setUsers(event.users),
        presence_diff: (event) => {
          const users = new Set(this.users);
          for (const name of event.leaves || []) users.delete(name);
          for (const name of event.joins || []) users.add(name);
          this.setUsers(users);
        },
        typing: (event) => this.showTyping(event.user),
        message_deleted: (event) => {
          this.deleted.add(event.id);
          if (this.messages.delete(event.id)) this.view.removeMessage(event.id);
        },
        announcement: (event) => this.view.showAnnouncement(event.text),
        error: (event) => this.view.showError(event.detail || event.code),
        pong: () => {}, // the transport's heartbeat consumed it already
      };
    }

    addMessage(event) {
      if (this.messages.has(event.id) || this.deleted.has(event.id)) return;
      this.messages.set(event.id, event);
      this.maxId = Math.max(this.maxId, event.id);
      this.view.insertMessage(event);
      this.stopTyping(event.user);
    }

    setUsers(users) {
      this.users = new Set(users);
      this.view.renderPresence([...this.users].sort());
    }

    showTyping(user) {
      if (user === this.username) return;
      clearTimeout(this.typingTimers.get(user));
      this.typingTimers.set(
        user,
        setTimeout(() => this.stopTyping(user), TYPING_SHOW_MS)
      );
      this.view.renderTyping([...this.typingTimers.keys()].sort());
    }

    stopTyping(user) {
      if (!this.typingTimers.has(user)) return;
      clearTimeout(this.typingTimers.get(user));
      this.typingTimers.delete(user);
      this.view.renderTyping([...this.typingTimers.keys()].sort());
    }

    clearTyping() {
      for (const user of [...this.typingTimers.keys()]) this.stopTyping(user);
    }
  }

  /** Return one handler map: for a type in several maps, each runs in turn. */
  function chain(...maps) {
    const merged = {};
    for (const map of maps) {
      for (const [type, handler] of Object.entries(map || {})) {
        const before = merged[type];
        merged[type] = before ? (event, client) => (before(event, client), handler(event, client)) : handler;
      }
    }
    return merged;
  }

  RoomClient.chain = chain;
  Realtime.RoomClient = RoomClient;
})((window.Realtime = window.Realtime || {}));
