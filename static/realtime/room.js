// The room page: wire the composer and the page's life to a RoomClient
// speaking WebSocket, or SSE + HTTP when WebSockets cannot get through.
(function (Realtime) {
  "use strict";

  const MAX_TEXT = 2000; // the server's REALTIME_MAX_TEXT default; it checks again

  const config = JSON.parse(document.getElementById("client-config").textContent);
  const view = new Realtime.RoomView({ username: config.username });
  const policy = Realtime.TransportPolicy.fromLocation();
  const client = new Realtime.RoomClient({
    config,
    view,
    makeTransport: (callbacks) => policy.make(callbacks),
  });
  policy.onProbeDue = () => client.restart();
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

  window.addEventListener("online", () => client.reconnectNow());
  // Leaving the page closes the socket on purpose; coming back from the
  // back/forward cache starts again where we were.
  window.addEventListener("pagehide", () => client.stop());
  window.addEventListener("pageshow", (e) => e.persisted && client.connect());

  client.connect();
  view.scrollToEnd();
})((window.Realtime = window.Realtime || {}));
