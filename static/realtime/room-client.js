// RoomClient: the room's state (messages by id, who is online, who is typing)
// and the connection's life (connect, reconnect with backoff, resume).
//
// It never touches a socket itself: ``makeTransport(callbacks)`` returns a
// fresh transport per attempt (see ws-transport.js for the interface), so a
// Server-Sent Events transport can be swapped in without changing this file.
(function (Realtime) {
  "use strict";

  const STABLE_AFTER_MS = 10000; // a connection open this long resets the backoff
  const TYPING_SHOW_MS = 3000;
  const TYPING_SEND_EVERY_MS = 2000;
  // Close codes after which reconnecting cannot help (CONTRACT.md section 3).
  const FATAL_CLOSES = {
    4401: "Your session ended (you logged out, or it expired).",
    4403: "Your account was deactivated.",
  };

  class RoomClient {
    constructor({ config, view, makeTransport, backoff = new Realtime.Backoff() }) {
      this.room = config.room;
      this.username = config.username;
      this.view = view;
      this.makeTransport = makeTransport;
      this.backoff = backoff;
      this.messages = new Map(); // id -> message event
      this.deleted = new Set(); // ids deleted while we watched; never shown again
      this.maxId = 0; // the highest message id seen: what a reconnect resumes after
      this.users = new Set();
      this.typingTimers = new Map(); // username -> timer that hides "is typing"
      this.lastTypingSent = 0;
      this.transport = null;
      this.live = false;
      this.ended = false; // for good: the session or the user is gone
      this.stopped = false; // for now: the page was left, it may come back
      this.stableTimer = null;
      this.retryTimer = null;
      this.countdownTimer = null;
      for (const event of config.history || []) this.addMessage(event);
    }

    // -- connection life --------------------------------------------------

    connect() {
      if (this.ended || this.transport) return;
      this.stopped = false;
      this.clearRetry();
      this.view.setStatus("connecting", "connecting…");
      const transport = this.makeTransport({
        room: this.room,
        onOpen: () => this.opened(transport),
        onEvent: (event) => transport === this.transport && this.handle(event),
        onClose: (info) => transport === this.transport && this.closed(info),
      });
      this.transport = transport;
      // Resume after the newest message we hold; 0 replays the whole room,
      // which is harmless because messages are de-duplicated by id.
      transport.connect(this.maxId);
    }

    opened(transport) {
      if (transport !== this.transport) return;
      clearTimeout(this.stableTimer);
      this.stableTimer = setTimeout(() => this.backoff.reset(), STABLE_AFTER_MS);
    }

    closed({ code, wasOpen }) {
      this.transport = null;
      this.live = false;
      clearTimeout(this.stableTimer);
      this.clearTyping();
      this.view.setPresenceStale(true);
      if (code in FATAL_CLOSES) {
        this.end(FATAL_CLOSES[code]);
      } else if (!wasOpen) {
        // A refused handshake looks like a network error (1006) to a browser;
        // ask the API whether the session is the reason before retrying.
        this.checkSession().then((ok) => (ok ? this.scheduleReconnect() : this.end(FATAL_CLOSES[4401])));
      } else {
        this.scheduleReconnect();
      }
    }

    async checkSession() {
      try {
        const response = await fetch("/api/me", { credentials: "same-origin", cache: "no-store" });
        return response.status !== 401;
      } catch {
        return true; // the network is down, not the session: keep retrying
      }
    }

    scheduleReconnect() {
      if (this.ended || this.stopped || this.transport || this.retryTimer) return;
      const delay = this.backoff.next();
      const deadline = Date.now() + delay;
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        const state = navigator.onLine === false ? "offline" : "reconnecting";
        const prefix = state === "offline" ? "offline · retrying" : "reconnecting";
        this.view.setStatus(state, `${prefix} in ${seconds} s…`);
      };
      tick();
      this.countdownTimer = setInterval(tick, 1000);
      this.retryTimer = setTimeout(() => {
        this.clearRetry();
        this.connect();
      }, delay);
    }

    /** Drop the live connection on purpose and connect again (e.g. to try another transport). */
    restart() {
      if (this.ended || !this.transport) return;
      this.transport.close();
      this.transport = null;
      this.live = false;
      this.connect();
    }

    /** Skip the wait (the network came back, the page became visible again). */
    reconnectNow() {
      if (!this.retryTimer) return;
      this.backoff.reset();
      this.clearRetry();
      this.connect();
    }

    clearRetry() {
      clearTimeout(this.retryTimer);
      clearInterval(this.countdownTimer);
      this.retryTimer = null;
      this.countdownTimer = null;
    }

    /** Close on purpose (page hidden for good): no reconnect follows. */
    stop() {
      this.stopped = true;
      this.clearRetry();
      clearTimeout(this.stableTimer);
      if (this.transport) this.transport.close();
      this.transport = null;
      this.live = false;
    }

    end(why) {
      this.ended = true;
      this.stop();
      this.view.setStatus("ended", "offline · session ended");
      this.view.showSessionEnded(why);
    }

    // -- client commands --------------------------------------------------

    /** Send a message; return false when it could not be sent (not connected). */
    sendMessage(text) {
      if (!this.live || !this.transport.send({ type: "message", text })) return false;
      // Our message clears "is typing" for the others, so the next keystroke may say it again.
      this.lastTypingSent = 0;
      return true;
    }

    /** Tell the room we are typing, at most once per TYPING_SEND_EVERY_MS. */
    noteTyping() {
      const now = Date.now();
      if (!this.live || now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
      if (this.transport.send({ type: "typing" })) this.lastTypingSent = now;
    }

    // -- server events ----------------------------------------------------

    handle(event) {
      const handler = this.handlers[event.type];
      // Unknown types are ignored, so an older page survives a newer server.
      if (handler) handler.call(this, event);
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

  RoomClient.prototype.handlers = {
    hello(event) {
      this.live = true;
      this.view.setStatus("live", `live · ${this.transport.name}`);
      this.view.setPresenceStale(false);
      if (event.user && event.user.username) this.username = event.user.username;
    },
    message(event) {
      this.addMessage(event);
    },
    presence(event) {
      this.setUsers(event.users);
    },
    presence_diff(event) {
      const users = new Set(this.users);
      for (const name of event.leaves || []) users.delete(name);
      for (const name of event.joins || []) users.add(name);
      this.setUsers(users);
    },
    typing(event) {
      this.showTyping(event.user);
    },
    message_deleted(event) {
      this.deleted.add(event.id);
      if (this.messages.delete(event.id)) this.view.removeMessage(event.id);
    },
    announcement(event) {
      this.view.showAnnouncement(event.text);
    },
    error(event) {
      this.view.showError(event.detail || event.code);
    },
    pong() {
      // The transport's heartbeat consumed it already.
    },
  };

  Realtime.RoomClient = RoomClient;
})((window.Realtime = window.Realtime || {}));
