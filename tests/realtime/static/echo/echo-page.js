// The echo page (tests/realtime/echo_site_urls.py): the core's generic client on the echo
// topic, a log topic: it lists each "said" event once, and each attempt resumes after the
// newest id it holds (lastId), so what was said while the connection was down arrives after.
(function (Realtime) {
  "use strict";

  const list = document.getElementById("said");
  const name = document.getElementById("echo").dataset.name;
  let newest = 0;

  function said(event) {
    if (event.id <= newest) return; // already shown
    newest = event.id;
    const item = document.createElement("li");
    item.dataset.id = String(event.id);
    item.textContent = event.text;
    list.append(item);
  }

  Realtime.echoClient = new Realtime.LiveClient({
    wsUrl: `/ws/echo/${name}/`,
    sseUrl: `/sse/echo/${name}/`,
    lastId: () => newest,
    on: {
      hello(event) {
        if (!newest) newest = event.last_id; // a first visit starts from now
      },
      said,
    },
  });
  Realtime.echoClient.connect();
})((window.Realtime = window.Realtime || {}));
