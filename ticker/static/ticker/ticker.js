// The ticker dashboard: one row per symbol, updated in place by "prices"
// events. A snapshot topic: a reconnect gets the latest prices, so the
// LiveClient needs no lastId (compare chat/static/chat/room-client.js).
(function (Realtime) {
  "use strict";

  const rows = document.getElementById("ticker-rows");
  const seq = document.getElementById("ticker-seq");

  /** Return the row of ``symbol``, adding it when the data names a new one. */
  function rowOf(symbol) {
    for (const row of rows.rows) if (row.dataset.symbol === symbol) return row;
    const row = rows.insertRow();
    row.dataset.symbol = symbol;
    for (const name of ["symbol", "price", "change"]) row.insertCell().className = name;
    row.cells[0].textContent = symbol;
    return row;
  }

  /** Show a prices event: {"seq": 17, "prices": {"ACME": {"price": "101.25", "change": "-0.50"}}}. */
  function show(snapshot) {
    if (!snapshot || !snapshot.prices) return;
    for (const [symbol, { price, change }] of Object.entries(snapshot.prices)) {
      const row = rowOf(symbol);
      const changeCell = row.querySelector(".change");
      row.querySelector(".price").textContent = price;
      changeCell.textContent = change;
      changeCell.dataset.trend = Number(change) > 0 ? "up" : Number(change) < 0 ? "down" : "flat";
    }
    seq.textContent = String(snapshot.seq);
  }

  show(JSON.parse(document.getElementById("ticker-snapshot").textContent));

  Realtime.tickerClient = new Realtime.LiveClient({
    wsUrl: "/ws/ticker/",
    sseUrl: "/sse/ticker/",
    on: { hello() {}, prices: show },
    onEnd(reason) {
      const box = document.getElementById("session-ended");
      box.querySelector(".session-ended-text").textContent = reason;
      box.hidden = false;
    },
  });
  Realtime.tickerClient.connect();
})((window.Realtime = window.Realtime || {}));
