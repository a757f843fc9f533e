// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
// Backoff And Jitter"): the delay is random(0, min(cap, base * 2^attempt)),
// so the clients of a topic, dropped together, do not reconnect together.
(function (Realtime) {
  "use strict";

  class Backoff {
    constructor({ baseMs = 500, capMs = 15000, random = Math.random } = {}) {
      this.baseMs = baseMs;
      this.capMs = capMs;
      this.random = random;
      this.attempt = 0;
    }

    /** Return the next delay in ms and count the attempt. */
    next() {
      const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 30); // 2^30 keeps the math finite
      return Math.floor(this.random() * ceiling);
    }

    /** Forget past failures (after a connection proved stable). */
    reset() {
      this.attempt = 0;
    }
  }

  Realtime.Backoff = Backoff;
})((window.Realtime = window.Realtime || {}));
