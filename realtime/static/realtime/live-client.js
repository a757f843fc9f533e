// LiveClient: one live connection to one topic, whatever the transport.
//
//   const client = new Realtime.LiveClient({
//     wsUrl: "/ws/prices/",
//     sseUrl: "/sse/prices/",
//     on: { hello(event) {}, prices(event) { render(event); } },
//   });
//   client.connect();
//
// WebSocket first, Server-Sent Events when WebSockets cannot get through
// (transport-policy.js; ?transport=websocket|sse in the page's URL forces
// one); reconnects with exponential backoff and full jitter (backoff.js);
// catches up after the last event id the app holds; stops for good on the
// fatal close codes 4401 and 4403; shows which transport is live. After 4401
// (the session ended) it first asks sessionUrl who the browser's cookie is
// now: a password change or a repeated login gave this browser a new session
// of the same user, so it reconnects and catches up instead of ending.
//
// Options (only wsUrl or sseUrl is required; with just one, that one is used):
//   wsUrl, sseUrl     the topic's WebSocket and SSE paths (or absolute URLs)
//   on                { type: handler(event, client) }: one per server event
//                     type; other types are ignored (an old page survives a
//                     newer server). Handlers are called with ``this`` = on.
//   events            the event names the SSE stream carries (default: the keys of on)
//   lastId()          for a log-based topic: the newest event id the app holds.
//                     Each attempt resumes after it (?after=<id> on both
//                     transports), and the app de-duplicates by id. Omit it
//                     for a snapshot topic: the server sends the latest state.
//   resumeParam       the query parameter that carries lastId() (default
//                     "after"), or (id) => ({ param: value, ... })
//   onStatus(state, transport, text)
//                     state: connecting (before the first live connection) |
//                     live | reconnecting | offline | ended;
//                     transport: "WebSocket" | "SSE" | null; text for people.
//                     Default: LiveClient.statusWriter(), which writes into
//                     every element with a data-live-status attribute
//                     (data-state = state, text content = text).
//   onLive(transport) the first event (hello) of a connection arrived
//   onDown(info)      a connection or attempt ended ({ code, reason, wasOpen });
//                     a reconnect follows unless the client ended
//   onEnd(reason, code)  the session or the account is gone: nothing follows
//   fatalCodes        { closeCode: reason } (default LiveClient.FATAL_CODES)
//   sessionUrl        asked after a refused handshake or a lost SSE stream
//                     (neither shows a status): 401 there ends the client as
//                     4401 would, 403 as 4403 (default "/api/me"; null: never ask).
//                     Asked after a 4401 too: the client goes on only if it
//                     answers 200 for the user of the connection's hello.
//   probeUrl          asked while an SSE stream is silent, to tell an idle stream
//                     from a stalled one (sse-transport.js): a cheap GET without
//                     side effects (default "/healthz"; null: never probe)
//   transport         "websocket" | "sse" forces one (default: ?transport= of the page)
//   pageLifecycle     default true: "pagehide" stops, "pageshow" from the
//                     back/forward cache connects again, "offline" drops the
//                     connection at once (reconnecting shows without waiting
//                     for the heartbeat), "online" retries now
//   backoff, policy   a Backoff and a TransportPolicy, to tune or test
//
// Methods: connect(), send(frame) -> bool (false when not live or on SSE),
// stop(), restart(), reconnectNow(), end(reason, code).
// Properties: live, canSend, transport ("WebSocket" | "SSE" | null), ended.
(function (Realtime) {
  "use strict";

  const STABLE_AFTER_MS = 10000; // a connection open this long resets the backoff
  // Close codes after which reconnecting cannot help (the wire contract, section 3).
  const FATAL_CODES = {
    4401: "Your session ended (you logged out, or it expired).",
    4403: "Your account was deactivated.",
  };
  const SESSION_STATUSES = { 401: 4401, 403: 4403 };
  const SESSION_ENDED = 4401;
  const SESSION_RECHECK_MS = [1000, 2500]; // after a 4401, the waits before asking sessionUrl again
  // Into a stalled network a request may hang for minutes: give up on it, and retry, after this.
  const SESSION_CHECK_WITHIN_MS = 3000;
  const NETWORK_LOST = 1006; // what onDown reports when the browser went offline
  const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Return an onStatus that writes into the elements ``target`` selects (or that element). */
  function statusWriter(target = "[data-live-status]") {
    return (state, transport, text) => {
      const nodes = typeof target === "string" ? document.querySelectorAll(target) : [target];
      for (const node of nodes) {
        node.dataset.state = state; // a stable word tests and CSS can read
        node.textContent = text;
      }
    };
  }

  /** Return ``path`` as an absolute URL (ws: or wss: for a WebSocket) with ``params`` added. */
  function absoluteUrl(path, { websocket = false, params = {} } = {}) {
    if (!path) return null;
    const url = new URL(path, location.href);
    if (websocket && url.protocol === "https:") url.protocol = "wss:";
    if (websocket && url.protocol === "http:") url.protocol = "ws:";
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
    return url.href;
  }

  class LiveClient {
    constructor({
      wsUrl = null,
      sseUrl = null,
      on = {},
      events = null,
      lastId = null,
      resumeParam = "after",
      onStatus = statusWriter(),
      onLive = () => {},
      onDown = () => {},
      onEnd = () => {},
      fatalCodes = FATAL_CODES,
      sessionUrl = "/api/me",
      probeUrl = "/healthz",
      transport = undefined,
      pageLifecycle = true,
      backoff = new Realtime.Backoff(),
      policy = null,
    }) {
      if (!wsUrl && !sseUrl) throw new TypeError("LiveClient needs wsUrl, sseUrl or both");
      this.wsUrl = wsUrl;
      this.sseUrl = sseUrl;
      this.on = on;
      this.events = events || Object.keys(on);
      this.lastId = lastId;
      this.resumeParam = typeof resumeParam === "function" ? resumeParam : (id) => ({ [resumeParam]: id });
      this.onStatus = onStatus;
      this.onLive = onLive;
      this.onDown = onDown;
      this.onEnd = onEnd;
      this.fatalCodes = fatalCodes;
      this.sessionUrl = sessionUrl;
      this.probeUrl = probeUrl;
      this.backoff = backoff;
      let forced = transport === undefined ? Realtime.TransportPolicy.forcedByLocation() : transport;
      if (!sseUrl) forced = "websocket";
      if (!wsUrl) forced = "sse";
      this.policy = policy || new Realtime.TransportPolicy({ forced });
      this.policy.onProbeDue = () => this.restart();
      this.current = null; // the transport of the attempt under way, if any
      this.live = false; // the current connection delivered its first event
      this.wasLive = false; // some connection of this client was live
      this.ended = false; // for good: the session or the user is gone
      this.userId = null; // the user the server's hello named (checked after a 4401)
      this.stopped = false; // for now: the page was left, it may come back
      this.stableTimer = null;
      this.retryTimer = null;
      this.countdownTimer = null;
      if (pageLifecycle) {
        window.addEventListener("offline", () => this.networkLost());
        window.addEventListener("online", () => this.reconnectNow());
        window.addEventListener("pagehide", () => this.stop());
        window.addEventListener("pageshow", (e) => e.persisted && this.connect());
      }
    }

    /** The live transport's name: "WebSocket", "SSE", or null between connections. */
    get transport() {
      return this.current ? this.current.name : null;
    }

    /** Whether send() can deliver a frame now (live, and over a WebSocket). */
    get canSend() {
      return this.live && Boolean(this.current && this.current.canSend);
    }

    // -- connection life --------------------------------------------------

    connect() {
      if (this.ended || this.current) return;
      this.stopped = false;
      this.clearRetry();
      const id = this.lastId ? this.lastId() : null;
      const params = id === null || id === undefined ? {} : this.resumeParam(id);
      const transport = this.policy.make({
        websocket: { url: absoluteUrl(this.wsUrl, { websocket: true, params }) },
        sse: { url: absoluteUrl(this.sseUrl, { params }), events: this.events, probeUrl: absoluteUrl(this.probeUrl) },
        onOpen: () => this.opened(transport),
        onEvent: (event) => transport === this.current && this.receive(event),
        onClose: (info) => transport === this.current && this.closed(transport, info),
      });
      this.current = transport;
      // Once live, every later attempt is a reconnect: the page says so until live again.
      if (this.wasLive) this.status("reconnecting", "reconnecting…");
      else this.status("connecting", "connecting…");
      transport.connect();
    }

    opened(transport) {
      if (transport !== this.current) return;
      clearTimeout(this.stableTimer);
      this.stableTimer = setTimeout(() => this.backoff.reset(), STABLE_AFTER_MS);
    }

    receive(event) {
      if (event.type === "hello" && event.user) this.userId = event.user.id;
      if (!this.live) {
        // The first event of a connection (hello, by the contract) makes it live.
        this.live = true;
        this.wasLive = true;
        this.status("live", `live · ${this.transport}`);
        this.onLive(this.transport);
      }
      const handler = this.on[event.type];
      if (handler) handler.call(this.on, event, this);
    }

    closed(transport, info) {
      this.current = null;
      this.live = false;
      clearTimeout(this.stableTimer);
      this.onDown(info);
      if (info.code === SESSION_ENDED && this.sessionUrl) {
        // The session ended, or only its key did: a password change or a new login
        // gave this browser a new cookie. The same user goes on (and catches up);
        // anyone else, or nobody, ends the client. The server closes the socket
        // while it answers the request that changed the key, so the new cookie may
        // not be in the browser yet: a refusal is asked again, twice, a moment later.
        this.status("reconnecting", "reconnecting…");
        this.sessionAfterClose().then((code) => {
          if (code) this.end(this.fatalCodes[code] || FATAL_CODES[code], code);
          else this.scheduleReconnect();
        });
      } else if (info.code in this.fatalCodes) {
        this.end(this.fatalCodes[info.code], info.code);
      } else if (!info.wasOpen || !transport.reportsCloseCodes) {
        // A refused handshake looks like a network error (1006) to a browser,
        // and an SSE stream shows neither code nor status: ask the server
        // whether the session is the reason before retrying.
        this.status("reconnecting", "reconnecting…");
        this.checkSession().then((code) => {
          if (code) this.end(this.fatalCodes[code] || FATAL_CODES[code], code);
          else this.scheduleReconnect();
        });
      } else {
        this.scheduleReconnect();
      }
    }

    /**
     * The browser says the network is gone: a socket may stay "open" without a
     * FIN for a while, so give it up now; "online" reconnects and catches up.
     */
    networkLost() {
      const transport = this.current;
      if (this.ended || this.stopped || !transport) return;
      transport.close();
      this.closed(transport, { code: NETWORK_LOST, reason: "offline", wasOpen: this.live });
    }

    /** After a 4401: return 4401 or 4403 once sessionUrl still refuses after the waits, else null. */
    async sessionAfterClose() {
      let code = await this.checkSession({ sameUser: true });
      for (const wait of SESSION_RECHECK_MS) {
        if (code !== SESSION_ENDED) break;
        await delay(wait);
        if (this.stopped) return null; // the page was left: connect() on its return asks again
        code = await this.checkSession({ sameUser: true });
      }
      return code;
    }

    /**
     * Return 4401 or 4403 when the session or the account is gone, else null.
     * With sameUser, a session of another user than the hello's is gone too (4401).
     */
    async checkSession({ sameUser = false } = {}) {
      if (!this.sessionUrl) return null;
      try {
        const response = await fetch(this.sessionUrl, {
          credentials: "same-origin",
          cache: "no-store",
          signal: AbortSignal.timeout(SESSION_CHECK_WITHIN_MS),
        });
        const code = SESSION_STATUSES[response.status] || null;
        if (code || !sameUser || !response.ok || this.userId === null) return code;
        const me = await response.json();
        return me.id === this.userId ? null : SESSION_ENDED;
      } catch {
        return null; // the network is down, not the session: keep retrying
      }
    }

    scheduleReconnect() {
      if (this.ended || this.stopped || this.current || this.retryTimer) return;
      const delay = this.backoff.next();
      const deadline = Date.now() + delay;
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        const state = navigator.onLine === false ? "offline" : "reconnecting";
        const prefix = state === "offline" ? "offline · retrying" : "reconnecting";
        this.status(state, `${prefix} in ${seconds} s…`);
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
      if (this.ended || !this.current) return;
      this.current.close();
      this.current = null;
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

    /** Close on purpose (the page is left): no reconnect follows until connect(). */
    stop() {
      this.stopped = true;
      this.clearRetry();
      clearTimeout(this.stableTimer);
      if (this.current) this.current.close();
      this.current = null;
      this.live = false;
    }

    /** Stop for good, saying why: the session or the account is gone. */
    end(reason, code) {
      this.ended = true;
      this.stop();
      this.status("ended", "offline · session ended");
      this.onEnd(reason, code);
    }

    // -- client frames ----------------------------------------------------

    /** Send a frame up the WebSocket; return false when it could not be sent (not live, or on SSE). */
    send(frame) {
      return this.canSend && this.current.send(frame);
    }

    status(state, text) {
      this.onStatus(state, this.transport, text);
    }
  }

  LiveClient.FATAL_CODES = FATAL_CODES;
  LiveClient.statusWriter = statusWriter;
  Realtime.LiveClient = LiveClient;
})((window.Realtime = window.Realtime || {}));
