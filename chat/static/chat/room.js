// The room page: wire the composer and the room's extensions to a RoomClient.
//
// Extensions: a script loaded before this one may add itself to
// Realtime.roomExtensions (uploads/static/uploads/upload.js does):
//   (Realtime.roomExtensions = Realtime.roomExtensions || []).push({
//     on: { upload_progress(event) {...} },          // more server events
//     decorateAttachment(body, attachment, href) {}, // add to a message's attachment
//     setup({ config, client, view }) {},            // once, before connecting
//   });
(function (Realtime) {
  "use strict";

  const MAX_TEXT = 2000; // the server's CHAT_MAX_TEXT default; it checks again

  const config = JSON.parse(document.getElementById("client-config").textContent);
  const extensions = Realtime.roomExtensions || [];
  const view = new Realtime.RoomView({
    username: config.username,
    decorateAttachment: (...args) => {
      for (const extension of extensions) if (extension.decorateAttachment) extension.decorateAttachment(...args);
    },
  });
  const client = new Realtime.RoomClient({ config, view, on: extensions.map((extension) => extension.on) });
  for (const extension of extensions) if (extension.setup) extension.setup({ config, client, view });
  Realtime.roomClient = client; // handy from the devtools console

  const form = document.getElementById("composer");
  const box = form.elements.text;

  function autosize() {
    box.style.height = "auto";
    box.style.height = `${box.scrollHeight}px`;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    // Code points, as the server counts them (an emoji is one character).
    if ([...text].length > MAX_TEXT) {
      view.showError(`Messages are limited to ${MAX_TEXT} characters.`);
      return;
    }
    if (!client.sendMessage(text)) {
      view.showError("Not connected: your message was not sent (it is still in the box).");
      return;
    }
    box.value = "";
    autosize();
  });

  box.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter adds a line; never interrupt an IME composition.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  box.addEventListener("input", () => {
    autosize();
    if (box.value.trim()) client.noteTyping();
  });

  // LiveClient handles the page's life itself: leaving the page closes the
  // connection on purpose, the back/forward cache resumes it, "online" retries now.
  client.connect();
  view.scrollToEnd();
})((window.Realtime = window.Realtime || {}));
