// The room page's DOM: every change to the page goes through RoomView (the
// connection status excepted: LiveClient writes it into #status, which has
// the data-live-status attribute).
//
// User text only ever reaches the page through textContent (never innerHTML),
// so a message like "<img onerror=...>" is shown as the characters it is.
(function (Realtime) {
  "use strict";

  const ERROR_SHOW_MS = 4000;
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

  /** Return a new element with a class and, optionally, text. */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Return a stable hue for a username, so each person keeps a colour. */
  function hueOf(name) {
    let hash = 0;
    for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return hash % 360;
  }

  /** Return a byte count for people: "812 B", "14 KB", "3.2 MB". */
  function formatSize(bytes) {
    if (!Number.isFinite(bytes)) return "";
    const units = ["B", "KB", "MB", "GB"];
    let unit = 0;
    while (bytes >= 1024 && unit < units.length - 1) {
      bytes /= 1024;
      unit += 1;
    }
    return ` ${bytes < 10 && unit ? bytes.toFixed(1) : Math.round(bytes)} ${units[unit]}`;
  }

  /** Return whether a URL from the server may become a link (no javascript: URLs). */
  function safeHref(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  class RoomView {
    /**
     * ``decorateAttachment(body, attachment, href)``, optional, is called for
     * each message with an attachment, after the link: how an extension (the
     * uploads' thumbnails) adds to a message without patching this class.
     */
    constructor({ username, decorateAttachment = () => {}, root = document }) {
      const $ = (id) => root.getElementById(id);
      this.username = username;
      this.decorateAttachment = decorateAttachment;
      this.messages = $("messages");
      this.presence = $("presence");
      this.presenceCount = $("presence-count");
      this.typing = $("typing");
      this.error = $("error");
      this.announcement = $("announcement");
      this.sessionEnded = $("session-ended");
      this.errorTimer = null;
      this.announcement.querySelector("button").addEventListener("click", () => {
        this.announcement.hidden = true;
      });
    }

    // -- messages ---------------------------------------------------------

    /** Insert a message event at its place in id order (the caller de-duplicates). */
    insertMessage(event) {
      const follow = this.isNearBottom();
      const item = this.messageItem(event);
      // New messages almost always belong at the end, so search backwards.
      let after = this.messages.lastElementChild;
      while (after && Number(after.dataset.id) > event.id) {
        after = after.previousElementSibling;
      }
      if (after) after.after(item);
      else this.messages.prepend(item);
      if (follow || event.user === this.username) this.scrollToEnd();
    }

    removeMessage(id) {
      const item = this.messages.querySelector(`li[data-id="${Number(id)}"]`);
      if (item) item.remove();
    }

    messageItem(event) {
      const item = el("li", event.user === this.username ? "message mine" : "message");
      item.dataset.id = String(event.id);
      item.dataset.user = event.user;

      const avatar = el("span", "avatar", (event.user[0] || "?").toUpperCase());
      avatar.setAttribute("aria-hidden", "true");
      avatar.style.setProperty("--hue", hueOf(event.user));

      const meta = el("div", "message-meta");
      meta.append(el("span", "message-user", event.user));
      const created = new Date(event.created);
      if (!Number.isNaN(created.getTime())) {
        const time = el("time", "message-time", timeFormat.format(created));
        time.dateTime = event.created;
        time.title = created.toLocaleString();
        meta.append(time);
      }

      const body = el("div", "message-body");
      body.append(meta, el("p", "message-text", event.text));
      const href = event.attachment && safeHref(event.attachment.url);
      if (href) {
        const link = el("a", "attachment", event.attachment.name);
        link.href = href;
        link.download = "";
        body.append(link, el("span", "attachment-size", formatSize(event.attachment.size)));
        this.decorateAttachment(body, event.attachment, href);
      }
      item.append(avatar, body);
      return item;
    }

    isNearBottom() {
      const box = this.messages;
      return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    }

    scrollToEnd() {
      this.messages.scrollTop = this.messages.scrollHeight;
    }

    // -- people -----------------------------------------------------------

    renderPresence(usernames) {
      const items = usernames.map((name) => {
        const item = el("li", name === this.username ? "person me" : "person", name);
        item.dataset.user = name;
        item.style.setProperty("--hue", hueOf(name));
        return item;
      });
      this.presence.replaceChildren(...items);
      this.presenceCount.textContent = String(usernames.length);
    }

    setPresenceStale(stale) {
      this.presence.classList.toggle("stale", stale);
    }

    renderTyping(usernames) {
      const n = usernames.length;
      let text = "";
      if (n === 1) text = `${usernames[0]} is typing…`;
      else if (n === 2) text = `${usernames[0]} and ${usernames[1]} are typing…`;
      else if (n > 2) text = `${usernames[0]}, ${usernames[1]} and ${n - 2} more are typing…`;
      this.typing.textContent = text;
    }

    // -- banners and status -----------------------------------------------

    showAnnouncement(text) {
      this.announcement.querySelector(".announcement-text").textContent = text;
      this.announcement.hidden = false;
    }

    showError(detail) {
      this.error.textContent = detail;
      this.error.hidden = false;
      clearTimeout(this.errorTimer);
      this.errorTimer = setTimeout(() => {
        this.error.hidden = true;
      }, ERROR_SHOW_MS);
    }

    showSessionEnded(text) {
      this.sessionEnded.querySelector(".session-ended-text").textContent = text;
      this.sessionEnded.hidden = false;
      for (const control of document.getElementById("composer").elements) control.disabled = true;
    }
  }

  Realtime.RoomView = RoomView;
})((window.Realtime = window.Realtime || {}));
