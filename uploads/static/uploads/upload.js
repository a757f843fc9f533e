// Attachments for the room page: a small tus 1.0 client and its controls.
//
// Why not tus-js-client: the server speaks core + creation + termination,
// the page has no build step, and a vendored 60 KB bundle would need its own
// updates and review. This client is the part of tus we use (create, HEAD,
// PATCH in chunks, DELETE), with the page's CSRF token on every request.
//
// Progress comes from the server: while bytes arrive it sends the uploader's
// WebSockets {"type": "upload_progress", "id", "offset", "size"}. This file
// adds itself to the room page as a room extension (Realtime.roomExtensions,
// see chat/static/chat/room.js): its ``on.upload_progress`` handler joins the
// room's LiveClient handlers, its ``decorateAttachment`` adds thumbnails to
// messages, its ``setup`` builds the controls. A PATCH answer (Upload-Offset)
// only confirms what the bar shows (and is all there is on the SSE fallback).
//
// Resume: the upload URL is kept in localStorage under a fingerprint of the
// file (room, name, size, last modified). Choosing the same file again, after
// a pause, a reload or a crash, asks the server where it stopped (HEAD) and
// goes on from there. Network errors retry with backoff; "online" retries now.
(function (Realtime) {
  "use strict";

  const ENDPOINT = "/api/uploads/";
  // At most FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB): Django keeps such a body in
  // memory instead of spooling it to a temporary file, and progress stays smooth.
  const CHUNK_SIZE = 2 * 1024 * 1024;
  const STORE_KEY = "realtime.uploads";
  const TUS = { "Tus-Resumable": "1.0.0" };
  // Shown inline by the server (raster images only; SVG is downloaded).
  const IMAGE_NAME = /\.(png|jpe?g|gif|webp|avif|bmp)$/i;
  const DONE_SHOW_MS = 4000;
  // An icon that needs no emoji font (headless and minimal systems lack one).
  const PAPERCLIP =
    '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="none" stroke="currentColor" ' +
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M21.4 11.1l-9.2 9.2a6 6 0 0 1-8.5-8.5' +
    'l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5"/></svg>';

  /** Return the CSRF token Django put in the page (the logout form carries one). */
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** Return tus Upload-Metadata: "key base64(utf-8 value)" pairs. */
  function encodeMetadata(values) {
    return Object.entries(values)
      .map(([key, value]) => {
        const bytes = new TextEncoder().encode(value);
        return `${key} ${btoa(String.fromCharCode(...bytes))}`;
      })
      .join(",");
  }

  // -- remembered uploads (survive a reload) ---------------------------------

  function loadStore() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY)) || {};
    } catch {
      return {};
    }
  }

  function saveStore(store) {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(store));
    } catch {
      // private mode or full: uploads still work, they just do not survive a reload
    }
  }

  function remember(fingerprint, entry) {
    saveStore({ ...loadStore(), [fingerprint]: entry });
  }

  function forget(fingerprint) {
    const store = loadStore();
    delete store[fingerprint];
    saveStore(store);
  }

  class UploadError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
    }
  }

  // -- the tus client -----------------------------------------------------------

  /**
   * One file going to one room. Events: onProgress(offset, size),
   * onState(state, detail) with state in uploading | paused | retrying |
   * done | failed | cancelled.
   */
  class TusUpload {
    constructor({ file, room, onProgress = () => {}, onState = () => {}, backoff = new Realtime.Backoff() }) {
      this.file = file;
      this.room = room;
      this.onProgress = onProgress;
      this.onState = onState;
      this.backoff = backoff;
      this.fingerprint = TusUpload.fingerprintOf(room, file);
      this.url = (loadStore()[this.fingerprint] || {}).url || null;
      this.offset = 0;
      this.running = false;
      this.controller = null;
      this.retryTimer = null;
    }

    static fingerprintOf(room, file) {
      return `${room}:${file.name}:${file.size}:${file.lastModified}`;
    }

    get id() {
      return this.url ? this.url.split("/").pop() : null;
    }

    /** Start or resume; resolves when the upload stops (done, paused, failed). */
    async start() {
      if (this.running) return;
      this.running = true;
      clearTimeout(this.retryTimer);
      this.onState("uploading");
      try {
        if (this.url) this.offset = await this.head();
        if (this.offset === null) this.url = null; // gone on the server: start over
        if (!this.url) {
          this.url = await this.create();
          this.offset = 0;
          remember(this.fingerprint, { url: this.url, room: this.room, name: this.file.name, size: this.file.size });
        }
        this.onProgress(this.offset, this.file.size);
        while (this.running && this.offset < this.file.size) {
          this.offset = await this.patch(this.offset);
          this.backoff.reset();
          this.onProgress(this.offset, this.file.size);
        }
        if (this.running) this.finish("done");
      } catch (error) {
        if (!this.running) return; // paused or cancelled: the abort is ours
        this.running = false;
        if (error.status === 409 || error.status === 423 || !(error instanceof UploadError) || error.status >= 500) {
          // A dropped connection, a server hiccup, or an offset to re-check: try again.
          const delay = this.backoff.next();
          this.onState("retrying", `retrying in ${Math.ceil(delay / 1000)} s…`);
          this.retryTimer = setTimeout(() => this.start(), delay);
        } else {
          if (error.status === 404) forget(this.fingerprint);
          this.onState("failed", error.message);
        }
      }
    }

    /** Stop sending; the server keeps what it has, and start() resumes. */
    pause() {
      this.running = false;
      clearTimeout(this.retryTimer);
      if (this.controller) this.controller.abort();
      this.onState("paused");
    }

    /** Give up: stop and ask the server to delete what it has (tus termination). */
    async cancel() {
      this.pause();
      forget(this.fingerprint);
      if (this.url) await this.request("DELETE", this.url).catch(() => {});
      this.onState("cancelled");
    }

    /** Retry now (the network is back). */
    retryNow() {
      if (this.retryTimer && !this.running) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.start();
      }
    }

    finish(state) {
      this.running = false;
      forget(this.fingerprint);
      this.onState(state);
    }

    async create() {
      const response = await this.request("POST", ENDPOINT, {
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": encodeMetadata({ filename: this.file.name, room: this.room }),
      });
      return new URL(response.headers.get("Location"), location.href).pathname;
    }

    /** Return the server's offset, or null when the upload no longer exists. */
    async head() {
      try {
        const response = await this.request("HEAD", this.url);
        return Number(response.headers.get("Upload-Offset"));
      } catch (error) {
        if (error.status === 404) return null;
        throw error;
      }
    }

    async patch(offset) {
      const chunk = this.file.slice(offset, Math.min(offset + CHUNK_SIZE, this.file.size));
      const response = await this.request(
        "PATCH",
        this.url,
        { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
        chunk
      );
      return Number(response.headers.get("Upload-Offset"));
    }

    async request(method, url, headers = {}, body = undefined) {
      this.controller = new AbortController();
      const response = await fetch(url, {
        method,
        body,
        headers: { ...TUS, "X-CSRFToken": csrfToken(), ...headers },
        credentials: "same-origin",
        cache: "no-store",
        signal: this.controller.signal,
      });
      if (!response.ok) {
        let detail = "";
        try {
          detail = (await response.json()).detail;
        } catch {
          // HEAD answers and some proxies have no JSON body
        }
        throw new UploadError(response.status, detail);
      }
      return response;
    }
  }

  // -- the controls -------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  /** The attach button, the hidden file input and the list of uploads of a room page. */
  class UploadPanel {
    constructor({ room, composer }) {
      this.room = room;
      this.items = new Map(); // fingerprint -> { upload, row, bar, label, toggle }
      this.input = el("input");
      this.input.type = "file";
      this.input.id = "attach-input";
      this.input.hidden = true;
      this.button = el("button", "button button-quiet attach-button");
      this.button.innerHTML = PAPERCLIP; // a constant, never user text
      this.button.type = "button";
      this.button.id = "attach";
      this.button.title = "Attach a file";
      this.button.setAttribute("aria-label", "Attach a file");
      this.list = el("ul", "uploads");
      this.list.id = "uploads";
      this.list.setAttribute("aria-label", "Uploads");
      composer.prepend(this.button, this.input);
      composer.before(this.list);

      this.button.addEventListener("click", () => this.input.click());
      this.input.addEventListener("change", () => {
        for (const file of this.input.files) this.add(file);
        this.input.value = "";
      });
      window.addEventListener("online", () => {
        for (const { upload } of this.items.values()) if (upload) upload.retryNow();
      });
      this.showRemembered();
    }

    /** Upload ``file``, resuming a remembered upload of the same file. */
    add(file) {
      const fingerprint = TusUpload.fingerprintOf(this.room, file);
      const existing = this.items.get(fingerprint);
      if (existing && existing.upload && existing.upload.running) return;
      const item = existing || this.row(fingerprint, file.name, file.size);
      item.upload = new TusUpload({
        file,
        room: this.room,
        onProgress: (offset, size) => this.setProgress(item, offset, size),
        onState: (state, detail) => this.setState(item, state, detail),
      });
      item.upload.start();
    }

    /** Show the uploads of this room that a reload interrupted; picking the file resumes. */
    showRemembered() {
      for (const [fingerprint, entry] of Object.entries(loadStore())) {
        if (entry.room !== this.room || this.items.has(fingerprint)) continue;
        const item = this.row(fingerprint, entry.name, entry.size);
        item.row.dataset.uploadId = entry.url.split("/").pop();
        this.setState(item, "interrupted");
        item.upload = null;
      }
    }

    row(fingerprint, name, size) {
      const row = el("li", "upload");
      const label = el("span", "upload-name", name);
      const bar = el("progress", "upload-bar");
      bar.max = size || 1;
      bar.value = 0;
      const status = el("span", "upload-status");
      const toggle = el("button", "button button-quiet upload-toggle", "Pause");
      toggle.type = "button";
      const cancel = el("button", "icon-button upload-cancel", "×");
      cancel.type = "button";
      cancel.setAttribute("aria-label", `Cancel upload of ${name}`);
      row.append(label, bar, status, toggle, cancel);
      this.list.append(row);
      const item = { fingerprint, row, bar, status, toggle, name, size, upload: null, offset: 0 };
      this.items.set(fingerprint, item);

      toggle.addEventListener("click", () => {
        const upload = item.upload;
        if (!upload) this.input.click(); // after a reload the file must be chosen again
        else if (upload.running || upload.retryTimer) upload.pause();
        else upload.start();
      });
      cancel.addEventListener("click", async () => {
        if (item.upload) await item.upload.cancel();
        else {
          const entry = loadStore()[fingerprint];
          forget(fingerprint);
          if (entry) fetch(entry.url, { method: "DELETE", headers: { ...TUS, "X-CSRFToken": csrfToken() } });
        }
        this.remove(item);
      });
      return item;
    }

    /** Move the bar forward (never back: events and answers may cross). */
    setProgress(item, offset, size) {
      // Progress events name the upload by id, known once the server created it.
      if (item.upload && item.upload.id) item.row.dataset.uploadId = item.upload.id;
      item.offset = Math.max(item.offset, offset);
      item.bar.max = size || 1;
      item.bar.value = size ? item.offset : 1;
      const percent = size ? Math.floor((100 * item.offset) / size) : 100;
      item.row.dataset.percent = String(percent);
      if (item.row.dataset.state === "uploading") {
        item.status.textContent = `${percent}% of ${formatSize(size)}`;
      }
    }

    setState(item, state, detail) {
      item.row.dataset.state = state;
      const percent = item.row.dataset.percent || "0";
      const texts = {
        uploading: `${percent}% of ${formatSize(item.size)}`,
        paused: `paused at ${percent}%`,
        retrying: detail || "retrying…",
        interrupted: "interrupted: choose the file again to resume",
        failed: `failed: ${detail || "error"}`,
        done: "sent",
        cancelled: "cancelled",
      };
      item.status.textContent = texts[state] || state;
      item.toggle.textContent = state === "uploading" || state === "retrying" ? "Pause" : "Resume";
      item.toggle.hidden = state === "done" || state === "failed";
      if (state === "done") {
        this.setProgress(item, item.size, item.size);
        setTimeout(() => this.remove(item), DONE_SHOW_MS);
      }
    }

    remove(item) {
      item.row.remove();
      if (this.items.get(item.fingerprint) === item) this.items.delete(item.fingerprint);
    }

    /** Apply a server upload_progress event to the matching row, if this page shows it. */
    progress(event) {
      for (const item of this.items.values()) {
        if (item.row.dataset.uploadId === event.id) this.setProgress(item, event.offset, event.size);
      }
    }
  }

  /** Add a thumbnail to an image attachment (RoomView calls it for each attachment). */
  function decorateAttachment(body, attachment, href) {
    if (!IMAGE_NAME.test(attachment.name)) return;
    const link = el("a", "attachment-image");
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener";
    const img = el("img", "attachment-thumb");
    img.src = href;
    img.alt = attachment.name;
    img.loading = "lazy";
    link.append(img);
    body.append(link);
  }

  Realtime.TusUpload = TusUpload;

  // The room page's hook (chat/static/chat/room.js); this script loads before it.
  let panel = null;
  (Realtime.roomExtensions = Realtime.roomExtensions || []).push({
    name: "uploads",
    setup({ config }) {
      const composer = document.getElementById("composer");
      if (composer) Realtime.uploadPanel = panel = new UploadPanel({ room: config.room, composer });
    },
    on: {
      upload_progress: (event) => panel && panel.progress(event),
    },
    decorateAttachment,
  });
})((window.Realtime = window.Realtime || {}));
