// The ticker dashboard: one row per symbol, updated in place by "prices"
// events, with a sparkline of the prices this page has seen, a brief
// highlight on each move, and the values dimmed while the connection is down.
// A snapshot topic: a reconnect gets the latest prices, so the LiveClient
// needs no lastId (compare chat/static/chat/room-client.js).
//
// The sparklines are inline SVG drawn here (one polyline per row, its points
// replaced on each tick): a charting library would be a vendored file many
// times this page's size for six lines without axes.
(function (Realtime) {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const HISTORY = 60; // points per sparkline: a minute at the default interval
  const SLOTS = 20; // a fresh page's few points spread over this many slots, then over HISTORY
  const WIDTH = 100; // the sparkline's viewBox; CSS scales it to the cell
  const HEIGHT = 28;
  const FLASH_MS = 700;

  const dashboard = document.getElementById("dashboard");
  const rows = document.getElementById("ticker-rows");
  const seq = document.getElementById("ticker-seq");
  const updated = document.getElementById("ticker-updated");
  const staleNote = document.getElementById("ticker-stale");
  const history = new Map(); // symbol -> the recent prices, oldest first
  const calm = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  /** Return the row of ``symbol``, adding it when the data names a new one. */
  function rowOf(symbol) {
    for (const row of rows.rows) if (row.dataset.symbol === symbol) return row;
    const row = rows.insertRow();
    row.dataset.symbol = symbol;
    for (const name of ["symbol", "spark", "price", "change"]) row.insertCell().className = name;
    row.cells[0].textContent = symbol;
    return row;
  }

  /** Return the polyline of a row's sparkline, creating its SVG the first time. */
  function lineOf(row) {
    const cell = row.querySelector(".spark");
    let line = cell.querySelector("polyline");
    if (line) return line;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    line = document.createElementNS(SVG, "polyline");
    svg.append(line);
    cell.append(svg);
    return line;
  }

  /** Add ``price`` to the symbol's history and redraw its sparkline, scaled to its own range. */
  function plot(row, symbol, price) {
    const points = history.get(symbol) || [];
    points.push(price);
    if (points.length > HISTORY) points.shift();
    history.set(symbol, points);
    const low = Math.min(...points);
    const span = Math.max(...points) - low || 1;
    const step = WIDTH / (Math.max(points.length, SLOTS) - 1);
    const offset = WIDTH - step * (points.length - 1); // the newest point at the right edge
    const coords = points.map((p, i) => {
      const x = offset + step * i;
      const y = HEIGHT - 2 - ((p - low) / span) * (HEIGHT - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    lineOf(row).setAttribute("points", coords.join(" "));
    row.dataset.trend = points[points.length - 1] >= points[0] ? "up" : "down";
  }

  /** Highlight a price that moved, green up or red down (the Web Animations API: no inline style). */
  function flash(cell, up) {
    if (calm || !cell.animate) return;
    const colour = up ? "rgb(18 161 80 / 30%)" : "rgb(217 45 32 / 30%)";
    cell.animate([{ backgroundColor: colour }, { backgroundColor: "transparent" }], {
      duration: FLASH_MS,
      easing: "ease-out",
    });
  }

  /** Show when the snapshot was taken, in the viewer's local time. */
  function showTime(at) {
    const when = at ? new Date(at) : null;
    if (!when || Number.isNaN(when.getTime())) return;
    updated.dateTime = when.toISOString();
    updated.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  /** Show a prices event: {"seq": 17, "prices": {"ACME": {"price": "101.25", "change": "-0.50"}}, "at": ...}. */
  function show(snapshot) {
    if (!snapshot || !snapshot.prices) return;
    for (const [symbol, { price, change }] of Object.entries(snapshot.prices)) {
      const row = rowOf(symbol);
      const priceCell = row.querySelector(".price");
      const changeCell = row.querySelector(".change");
      const moved = priceCell.textContent !== price && priceCell.textContent !== "–";
      priceCell.textContent = price;
      changeCell.textContent = change;
      changeCell.dataset.trend = Number(change) > 0 ? "up" : Number(change) < 0 ? "down" : "flat";
      plot(row, symbol, Number(price));
      if (moved) flash(priceCell, Number(change) >= 0);
    }
    seq.textContent = String(snapshot.seq);
    showTime(snapshot.at);
  }

  /** The header's status, and the values dimmed with a note while they may be out of date. */
  function status(state, transport, text) {
    Realtime.LiveClient.statusWriter()(state, transport, text);
    // Before the first connection ("connecting") the prices are the ones the server just rendered.
    const stale = state !== "live" && state !== "connecting";
    dashboard.dataset.stale = stale ? "yes" : "no";
    staleNote.hidden = !stale;
  }

  show(JSON.parse(document.getElementById("ticker-snapshot").textContent));

  Realtime.tickerClient = new Realtime.LiveClient({
    wsUrl: "/ws/ticker/",
    sseUrl: "/sse/ticker/",
    on: { hello() {}, prices: show },
    onStatus: status,
    onEnd(reason) {
      const box = document.getElementById("session-ended");
      box.querySelector(".session-ended-text").textContent = reason;
      box.hidden = false;
    },
  });
  Realtime.tickerClient.connect();
})((window.Realtime = window.Realtime || {}));
